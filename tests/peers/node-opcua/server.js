// A node-opcua server for the connector tests: an OPC UA stack this project did not write.
//
//   node server.js '{"port": 4840, "pki": "/tmp/pki", "security": true, "users": {"op": "secret"}}'
//
// It serves the variables of tests/connectors/servers.py (namespace urn:shangyun:test, string
// node ids m1.State, m1.PowerKw, m1.Alarm, m1.SerialNumber; m1.Level has an EURange), prints "READY <endpoint>" once
// listening, and takes commands on stdin, one JSON object a line: {"set": "State", "value": 2}
// sets a value (new source timestamp, Good). It exits when stdin closes, so a test that dies
// leaves no server behind.
"use strict";
const readline = require("readline");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { Variant, DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");
const { MessageSecurityMode, SecurityPolicy } = require("node-opcua-secure-channel");

const opts = JSON.parse(process.argv[2] || "{}");
const NS_URI = "urn:shangyun:test";
const TYPES = { State: [DataType.Int32, 1], PowerKw: [DataType.Double, 0.0],
  Alarm: [DataType.Boolean, false], SerialNumber: [DataType.String, "SN-NODE-1"],
  Level: [DataType.Double, 0.0] };

async function main() {
  const pki = opts.pki;
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: `${pki}/server`, automaticallyAcceptUnknownCertificate: opts.acceptAnyClient !== false,
  });
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: `${pki}/user`, automaticallyAcceptUnknownCertificate: true,
  });
  const secure = !!opts.security;
  const users = opts.users || null;
  const server = new OPCUAServer({
    port: opts.port,
    resourcePath: "/test/m1",
    serverCertificateManager,
    userCertificateManager,
    serverInfo: { applicationUri: "urn:shangyun:test:node-opcua", productUri: "urn:shangyun:test:vendor" },
    buildInfo: { productName: "NodePress", manufacturerName: "node-opcua", softwareVersion: "2.186" },
    securityPolicies: secure
      ? [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss]
      : [SecurityPolicy.None],
    securityModes: secure ? [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt]
      : [MessageSecurityMode.None],
    allowAnonymous: !users,
    userManager: users ? { isValidUser: (name, password) => users[name] === password } : undefined,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace(NS_URI);
  const machine = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "m1" });
  const vars = {};
  for (const [name, [dataType, value]] of Object.entries(TYPES)) {
    if (name === "Level") continue;   // an AnalogItem, added below
    vars[name] = ns.addVariable({
      componentOf: machine, browseName: name, nodeId: `s=m1.${name}`, dataType,
      value: new Variant({ dataType, value }),
    });
  }
  // An AnalogItem with an EURange: the base of a percent deadband (OPC UA Part 8).
  vars.Level = ns.addAnalogDataItem({
    componentOf: machine, browseName: "Level", nodeId: "s=m1.Level", dataType: "Double",
    engineeringUnitsRange: { low: 0, high: 200 }, value: new Variant({ dataType: DataType.Double, value: 0 }),
  });
  await server.start();
  process.stdout.write(`READY ${server.getEndpointUrl()}\n`);

  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    const [dataType] = TYPES[cmd.set];
    vars[cmd.set].setValueFromSource(new Variant({ dataType, value: cmd.value }), StatusCodes.Good, new Date());
    process.stdout.write(`OK ${cmd.set}\n`);
  });
  rl.on("close", async () => {
    await server.shutdown(0);
    process.exit(0);
  });
}

main().catch((err) => {
  process.stderr.write(`node-opcua server failed: ${err.stack || err}\n`);
  process.exit(1);
});
