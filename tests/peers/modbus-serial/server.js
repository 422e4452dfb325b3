// A Modbus TCP server built on modbus-serial's ServerTCP (a peer implementation this project
// did not write), serving the register image given as JSON on the command line:
//   node server.js PORT '{"holding": {"0": 1, ...}, "input": {...}, "coil": {...}, "discrete": {...}}'
// An address missing from the image is answered with exception 2 (illegal data address), as a
// real device with a sparse map does. Prints "listening PORT" once it accepts connections.
"use strict";
const ModbusRTU = require("modbus-serial");

const port = Number(process.argv[2]);
const image = JSON.parse(process.argv[3] || "{}");

function lookup(table, addr) {
    const values = image[table] || {};
    if (!(String(addr) in values)) {
        throw { modbusErrorCode: 0x02, msg: `no ${table} ${addr}` };
    }
    return values[String(addr)];
}

const vector = {
    getHoldingRegister: (addr) => lookup("holding", addr),
    getInputRegister: (addr) => lookup("input", addr),
    getCoil: (addr) => Boolean(lookup("coil", addr)),
    getDiscreteInput: (addr) => Boolean(lookup("discrete", addr)),
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 255 });
server.on("initialized", () => console.log(`listening ${port}`));
server.on("serverError", (err) => { console.error(err); process.exit(1); });
process.on("SIGTERM", () => server.close(() => process.exit(0)));
