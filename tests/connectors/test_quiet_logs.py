"""Log floods (issue 7): for an outage and its recovery an operator reads one warning and one
info line per device, not the protocol libraries' retries, frames and tracebacks."""
import asyncio
import logging
import random

import pytest

from connectors.logs import QUIET_LEVELS, quiet_libraries
from connectors.modbus.source import ModbusSource
from connectors.opcua.source import OpcUaSource
from connectors.supervisor import DeviceSupervisor, LinkState, stop_all
from tests.connectors.devices import SIM_STATES, device
from tests.connectors.servers import NS_URI, eventually, free_port
from tests.connectors.test_supervisor import Recorder, modbus_device

LIBRARIES = tuple(QUIET_LEVELS)


@pytest.fixture
def library_logging():
    """quiet_libraries changes process-wide loggers: put them back for the other tests."""
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in LIBRARIES]
    saved = {n: (lg.level, lg.propagate, list(lg.handlers))
             for n in {*names, *LIBRARIES} if isinstance(lg := logging.getLogger(n), logging.Logger)}
    yield
    for n, (level, propagate, handlers) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers


async def hung_modbus_device(port: int) -> asyncio.Server:
    """Accepts the connection and every request, answers none (a device whose firmware hung)."""
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(256):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()
    return await asyncio.start_server(swallow, "127.0.0.1", port)


def own_lines(caplog, device_id: str) -> list[tuple[str, str]]:
    # The once-per-source "poll overran" line is about load, not the link: on a busy machine a
    # 0.05 s poll can overrun, and that line is asserted on in test_modbus_skipped_polls.
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name.startswith("shangyun") and r.levelno >= logging.INFO
            and r.getMessage().startswith(f"device {device_id}:")
            and "poll(s) skipped" not in r.getMessage()]


async def test_outage_and_recovery_log_one_line_each(library_logging, caplog, modbus_server, opcua_server):
    quiet_libraries(False)
    caplog.set_level(logging.INFO)
    hung = await hung_modbus_device(hung_port := free_port())
    rec = Recorder()
    # Generous timeouts for the healthy devices: the servers share this event loop, and a
    # restarting asyncua server can hold it long enough to time out a short read, which would
    # be a second (real) outage.
    sources = {
        "mb": ModbusSource(device("modbus", {"host": "127.0.0.1", "port": modbus_server.port,
                                             "poll_interval_s": 0.05, "timeout_s": 3.0},
                                  [{"name": "level", "address": {"table": "holding", "offset": 0}}],
                                  device_id="mb")),
        "hung": ModbusSource(modbus_device(hung_port, device_id="hung")),
        "ua": OpcUaSource(device("opcua", {"endpoint": opcua_server.endpoint, "publishing_interval_ms": 50,
                                           "watchdog_interval_s": 0.5, "timeout_s": 3.0},
                                 [{"name": "state", "address": f"nsu={NS_URI};s=m1.State",
                                   "states": SIM_STATES}], device_id="ua")),
    }
    sups = {k: DeviceSupervisor(s, rec.emit, rec, backoff_initial_s=0.05, backoff_max_s=0.2,
                                rng=random.Random(1)) for k, s in sources.items()}
    tasks = {sup: asyncio.create_task(sup.run()) for sup in sups.values()}
    mb, ua, hang = sups["mb"], sups["ua"], sups["hung"]
    try:
        await eventually(lambda: mb.state is LinkState.ONLINE and ua.state is LinkState.ONLINE, what="online")
        await modbus_server.stop()
        await opcua_server.stop()
        await eventually(lambda: mb.state is LinkState.OFFLINE and ua.state is LinkState.OFFLINE,
                         what="offline")
        # several failed reconnects each, and the hung device several timed-out reads
        await eventually(lambda: min(s._backoff._attempt for s in (mb, ua, hang)) >= 2, what="retries")
        await modbus_server.start()
        await opcua_server.start()
        await eventually(lambda: mb.reconnects >= 1 and ua.reconnects >= 1, timeout_s=20, what="recovered")
        await eventually(lambda: mb.state is LinkState.ONLINE and ua.state is LinkState.ONLINE, what="online")
    finally:
        assert await stop_all(tasks, timeout_s=10) == []
        hung.close()
        await hung.wait_closed()

    for device_id in ("mb", "ua"):
        lines = own_lines(caplog, device_id)
        assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
        assert "offline" in lines[0][1] and "back online" in lines[1][1]
    hung_lines = own_lines(caplog, "hung")
    assert [level for level, _ in hung_lines] == ["WARNING"], hung_lines  # never came online
    library = [r for r in caplog.records if r.name.split(".")[0] in LIBRARIES]
    assert not [r for r in library if r.exc_info or r.exc_text or r.stack_info]
    assert "Traceback" not in caplog.text and ">>>>> send" not in caplog.text
    # the libraries' retries, frames and link errors are the supervisor's to report
    assert library == [], [(r.name, r.levelname, r.getMessage()) for r in library]


def test_verbose_gives_the_libraries_back_their_tracebacks(library_logging, caplog):
    caplog.set_level(logging.DEBUG)
    quiet_libraries(False)
    child = logging.getLogger("asyncua.client.some_module")
    child.info("chatter")
    try:
        raise ConnectionError("Connection is closed")
    except ConnectionError:
        child.exception("Publish iteration crashed")  # the supervisor reports the link
    try:
        raise ValueError("bad chunk")
    except ValueError:
        child.exception("Exception raised while parsing message from server")
    quiet = [r for r in caplog.records if r.name == child.name]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in quiet] == [
        ("ERROR", "Exception raised while parsing message from server (ValueError: bad chunk)", None)]
    caplog.clear()
    quiet_libraries(True)
    child.info("chatter")
    try:
        raise ConnectionError("Connection is closed")
    except ConnectionError:
        child.exception("Publish iteration crashed")
    verbose = [r for r in caplog.records if r.name == child.name]
    assert [r.getMessage() for r in verbose] == ["chatter", "Publish iteration crashed"]
    assert verbose[1].exc_info is not None and "Traceback" in caplog.text
    # one handler however often it is called
    quiet_libraries(False)
    quiet_libraries(False)
    assert len(logging.getLogger("asyncua").handlers) == 1
