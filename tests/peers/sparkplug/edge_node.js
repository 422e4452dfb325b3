// A Sparkplug B edge node for the tests, built from Eclipse Tahu's encoder (sparkplug-payload)
// and mqtt.js: neither was written by this project.
//
//   node edge_node.js mqtt://HOST:PORT script.json
//
// script.json: {"will": {topic, payload}, "command_topic": "...", "commands": N, "timeout_ms": T,
//               "messages": [{"topic": "...", "payload": {<Tahu payload object>}}, ...],
//               "on_rebirth": [messages published when a Node Control/Rebirth command arrives],
//               "die": true}
// Payload objects are Tahu's: {timestamp, seq, metrics: [{name, alias, type, value, timestamp}]}.
// Connects (with the will, if any), subscribes to command_topic, publishes the messages in
// order (QoS 1, each acknowledged before the next), waits for N commands and prints each one,
// decoded by Tahu, as a JSON line; then disconnects, or with "die" drops the socket so that
// the broker publishes the will (an NDEATH, as when a real edge node loses power).
"use strict";
const fs = require("fs");
const mqtt = require("mqtt");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const [url, file] = process.argv.slice(2);
const script = JSON.parse(fs.readFileSync(file, "utf8"));
const encode = (p) => Buffer.from(sparkplug.encodePayload(p));

const options = { protocolVersion: 4, clean: true, reconnectPeriod: 0 };
if (script.will) {
  options.will = { topic: script.will.topic, payload: encode(script.will.payload), qos: 1, retain: false };
}
const client = mqtt.connect(url, options);
const want = script.commands || 0;
let got = 0;
const timer = setTimeout(() => {
  console.error(`timeout: ${got} of ${want} commands`);
  process.exit(3);
}, script.timeout_ms || 30000);

function finish() {
  clearTimeout(timer);
  if (script.die) {
    client.stream.destroy();       // no DISCONNECT: the broker sends the will
    setTimeout(() => process.exit(0), 200);
  } else {
    client.end(false, {}, () => process.exit(0));
  }
}

client.on("message", async (topic, message) => {
  const decoded = sparkplug.decodePayload(message);
  console.log(JSON.stringify({ topic, payload: decoded }, (k, v) => (typeof v === "bigint" ? v.toString() : v)));
  const rebirth = (decoded.metrics || []).some((m) => m.name === "Node Control/Rebirth" && m.value === true);
  if (rebirth && script.on_rebirth) {
    // As an edge node does when a host asks: its births again (and, here, what follows them).
    for (const m of script.on_rebirth) {
      await client.publishAsync(m.topic, encode(m.payload), { qos: 1 });
    }
  }
  got += 1;
  if (got >= want) finish();
});
client.on("error", (err) => {
  console.error(`mqtt: ${err.message}`);
  process.exit(2);
});
client.on("connect", async () => {
  if (script.command_topic) await client.subscribeAsync(script.command_topic, { qos: 1 });
  for (const m of script.messages) {
    await client.publishAsync(m.topic, encode(m.payload), { qos: 1 });
  }
  console.log(JSON.stringify({ published: script.messages.length }));
  if (got >= want) finish();
});
