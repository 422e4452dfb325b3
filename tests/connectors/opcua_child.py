"""The asyncua test server in a child process, so a test can kill it (no goodbye to clients)
and start it again on the same port:

    python -m tests.connectors.opcua_child PORT

prints "READY" once listening and takes one JSON command a line on stdin, {"set": "PowerKw",
"value": 2.5}, answering "OK PowerKw". It exits when stdin closes.
"""
from __future__ import annotations

import asyncio
import json
import sys

from tests.connectors.servers import OpcUaTestServer


async def main(port: int) -> None:
    server = OpcUaTestServer(port)
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        await server.write(cmd["set"], cmd["value"])
        print(f"OK {cmd['set']}", flush=True)
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
