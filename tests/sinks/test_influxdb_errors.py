"""HTTP status -> typed errors, end to end through the forwarder: throttled with Retry-After, the
one malformed point isolated, dead-lettered and counted, the rest delivered in order; the token
never appears in a log line, an error or a repr."""
from __future__ import annotations

import asyncio
import logging

import pytest

from edge import outbox
from edge.errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from edge.forwarder import Forwarder
from edge.model import NS_PER_S, Quality, Sample
from edge.sinks import Batch, make_sink, parse
from edge.store import Store

from .check import until
from .fake_influx import FakeInflux
from .load import batch

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-T0KEN-never-logged"
T0 = 1_790_000_000 * NS_PER_S


def _cfg(url: str, **extra: object) -> dict:
    return {"type": "influxdb", "url": url, "org": "factory", "bucket": "b", "token": TOKEN,
            "site": "s1", **extra}


async def test_throttled_then_one_bad_point_rejected_without_blocking_the_rest(store: Store) -> None:
    with FakeInflux(throttle_first=2, retry_after="0.2") as server:
        sink = make_sink(_cfg(server.url, max_batch=64))
        fwd = Forwarder(store, sink, retry_min_s=0.05, retry_max_s=0.2)
        good = batch(["m00", "m01"], T0, 40)
        bad = Sample("m01", "note", T0 + 5 * NS_PER_S + 1, "POISON", Quality.GOOD)
        store.write_samples(good[:50] + [bad] + good[50:])
        stop = asyncio.Event()
        task = asyncio.create_task(fwd.run(stop))
        try:
            await until(lambda: outbox.stats(store)[0].backlog == 0, 30, "the outbox drained")
        finally:
            stop.set()
            await task
            await sink.close()
        st = outbox.stats(store)[0]
        assert st.rejected == 1 and st.sent == len(good) and st.retried >= 2
        assert [s for s, _ in server.requests[:2]] == [429, 429]
        assert len(server.accepted) == len(good) and not any("POISON" in ln for ln in server.accepted)
        # In outbox order: the timestamps of each series never go back.
        last: dict[str, int] = {}
        for line in server.accepted:
            series, ts = line.rsplit(" ", 2)[0], int(line.rsplit(" ", 1)[1])
            assert ts >= last.get(series, 0)
            last[series] = ts
        (dead,) = store.dead_letters("m01")
        assert dead.signal == "note" and "POISON" in dead.value and dead.reason == "sink influxdb: HTTP 400"


@pytest.mark.parametrize(("status", "error"), [
    (400, RejectedSinkError), (413, RejectedSinkError), (422, RejectedSinkError),
    (401, RetryableSinkError), (404, RetryableSinkError), (500, RetryableSinkError),
    (503, RetryableSinkError)])
async def test_http_status_maps_to_a_typed_error(status: int, error: type) -> None:
    with FakeInflux(throttle_first=0, status_for_poison=status, retry_after="7") as server:
        sink = make_sink(_cfg(server.url))
        try:
            with pytest.raises(error) as info:
                await sink.send(Batch([Sample("d", "x", 1, "POISON", Quality.GOOD)]))
        finally:
            await sink.close()
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_as_given(status: int) -> None:
    with FakeInflux(throttle_first=1, retry_after="7", throttle_status=status) as server:
        sink = make_sink(_cfg(server.url))
        try:
            with pytest.raises(ThrottledSinkError) as info:
                await sink.send(Batch([Sample("d", "x", 1, 1.0, Quality.GOOD)]))
        finally:
            await sink.close()
    assert info.value.retry_after_s == 7.0


async def test_unreachable_server_is_retryable() -> None:
    from simulator.ports import free_port
    sink = make_sink(_cfg(f"http://127.0.0.1:{free_port()}", timeout_s=2))
    try:
        with pytest.raises(RetryableSinkError, match="unreachable"):
            await sink.send(Batch([Sample("d", "x", 1, 1.0, Quality.GOOD)]))
        assert not sink.connected
    finally:
        await sink.close()


async def test_token_is_sent_but_never_logged(store: Store, caplog, monkeypatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    cfg = parse({**_cfg("http://x:1"), "token": "${INFLUX_TOKEN}"})
    assert cfg.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump())
    with FakeInflux(throttle_first=1, status_for_poison=401) as server:
        sink = make_sink({**_cfg(server.url), "token": "${INFLUX_TOKEN}"})
        fwd = Forwarder(store, sink, retry_min_s=0.05, retry_max_s=0.1)
        store.write_samples([Sample("m00", "note", T0, "POISON", Quality.GOOD)])
        stop = asyncio.Event()
        task = asyncio.create_task(fwd.run(stop))
        try:
            await until(lambda: outbox.stats(store)[0].retried >= 3, 30, "a few failed attempts")
        finally:
            stop.set()
            await task
            await sink.close()
        assert server.auth[0] == f"Token {TOKEN}"        # it was really used
    st = outbox.stats(store)[0]
    assert "HTTP 401" in (st.last_error or "")
    assert TOKEN not in caplog.text and TOKEN not in (st.last_error or "")
    assert any("sink influxdb" in r.getMessage() for r in caplog.records)


def test_config_errors_name_the_field_and_an_unset_variable(monkeypatch) -> None:
    from edge.errors import ConfigError
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        parse({**_cfg("http://x:1"), "token": "${NOT_SET_ANYWHERE}"})
    with pytest.raises(ConfigError, match=r"sinks\[influxdb\]\.url"):
        parse({**_cfg("ftp://x")})
    with pytest.raises(ConfigError, match="unknown sink type 'kafka'"):
        parse({"type": "kafka"})
