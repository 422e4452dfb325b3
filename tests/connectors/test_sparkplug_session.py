"""Edge node session rules that the peer test does not reach: sequence wrap, the rebirth rate
limit, refused payloads, unmappable data, the route's config checks."""
from __future__ import annotations

import pytest

from connectors.mqtt.sparkplug import codec
from connectors.mqtt.sparkplug.codec import Metric, Payload
from connectors.mqtt.sparkplug.route import SparkplugRoute
from connectors.mqtt.sparkplug.session import Binding, SparkplugHost
from edge.model import Quality, SignalSpec
from edge.rejects import BAD_SPARKPLUG, UNMAPPABLE
from tests.connectors.devices import device

G, N, D = "g", "n", "d"


def raw(seq: int | None, *metrics: Metric) -> bytes:
    return codec.encode(Payload(timestamp_ms=1000, seq=seq, metrics=list(metrics)))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def host(clock: Clock, interval_s: float = 10.0) -> SparkplugHost:
    h = SparkplugHost({(G, N, D): Binding("p1", {"Speed": SignalSpec("speed")})},
                      rebirth_interval_s=interval_s, clock=clock)
    h.handle(f"spBv1.0/{G}/NBIRTH/{N}", raw(0, Metric(name="bdSeq", value=1)), 1)
    h.handle(f"spBv1.0/{G}/DBIRTH/{N}/{D}", raw(1, Metric(name="Speed", alias=5, datatype=10, value=1.0)), 1)
    return h


def test_the_sequence_wraps_at_255_without_a_gap():
    h = host(Clock())
    for seq in [*range(2, 256), 0, 1]:
        out = h.handle(f"spBv1.0/{G}/DDATA/{N}/{D}", raw(seq, Metric(alias=5, datatype=10, value=2.0)), 1)
        assert not out.commands and [s.value for s in out.samples] == [2.0]
    assert h.counters.sequence_gaps == 0


def test_rebirth_requests_are_rate_limited_per_node():
    clock = Clock()
    h = host(clock)
    topic = f"spBv1.0/{G}/DDATA/{N}/{D}"
    first = h.handle(topic, raw(9, Metric(alias=5, datatype=10, value=2.0)), 1)
    assert [t for t, _ in first.commands] == [f"spBv1.0/{G}/NCMD/{N}"]
    assert not h.handle(topic, raw(20, Metric(alias=5, datatype=10, value=2.0)), 1).commands
    clock.t = 10.0
    assert h.handle(topic, raw(40, Metric(alias=5, datatype=10, value=2.0)), 1).commands
    assert (h.counters.sequence_gaps, h.counters.rebirths_requested, h.counters.rebirths_suppressed) == (3, 2, 1)


def test_a_bad_payload_is_refused_and_asks_for_a_rebirth():
    h = host(Clock())
    out = h.handle(f"spBv1.0/{G}/DDATA/{N}/{D}", b"\x12\x09garbage", 1)
    assert [(r.reason, r.device_id) for r in out.refused] == [(BAD_SPARKPLUG, "p1")]
    assert out.commands and not out.samples
    bad_topic = h.handle(f"spBv1.0/{G}/DDATA/{N}", raw(2), 1)
    assert [r.reason for r in bad_topic.refused] == [BAD_SPARKPLUG]


def test_data_with_no_configured_metric_is_unmappable_and_a_null_is_bad():
    h = host(Clock())
    out = h.handle(f"spBv1.0/{G}/DDATA/{N}/{D}", raw(2, Metric(name="Other", value=1)), 1)
    assert [r.reason for r in out.refused] == [UNMAPPABLE]
    out = h.handle(f"spBv1.0/{G}/DDATA/{N}/{D}", raw(3, Metric(alias=5, datatype=10, value=None)), 1)
    assert [(s.signal, s.quality) for s in out.samples] == [("speed", Quality.BAD)]


def sparkplug_device(topic: str, device_id: str = "p1", **settings: object) -> object:
    return device("mqtt", {"host": "h", "topic": topic, "payload_format": "sparkplug",
                           "sparkplug": {"group": G, "edge_node": N, **settings}},
                  [{"name": "speed", "address": "Speed"}], device_id=device_id)


def test_the_route_refuses_a_topic_that_misses_the_node_and_a_device_claimed_twice():
    route = SparkplugRoute()
    with pytest.raises(ValueError, match="does not cover"):
        route.add_device(sparkplug_device(f"spBv1.0/{G}/DDATA/{N}/{D}", device=D))
    route.add_device(sparkplug_device(f"spBv1.0/{G}/#", device=D))
    with pytest.raises(ValueError, match="already device p1"):
        route.add_device(sparkplug_device(f"spBv1.0/{G}/+/{N}/#", device_id="p2", device=D))
    with pytest.raises(ValueError):
        route.add_device(sparkplug_device(f"spBv1.0/{G}/#", device_id="p3", device="a/b"))
    assert route.filters == (f"spBv1.0/{G}/#",)


from hypothesis import given, settings, strategies as st  # noqa: E402

_KINDS = ["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "STATE"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KINDS), st.booleans(),
                          st.one_of(st.binary(max_size=120),
                                    st.builds(lambda seq, v: raw(seq, Metric(alias=5, datatype=10, value=v)),
                                              st.integers(0, 300), st.floats(allow_nan=True)))),
                max_size=12))
def test_any_message_sequence_never_raises_and_never_yields_a_wrong_type(messages):
    h = host(Clock(), interval_s=0)
    for kind, with_device, payload in messages:
        t = f"spBv1.0/{G}/{kind}/{N}" + (f"/{D}" if with_device else "")
        out = h.handle(t, payload, 1)
        for s in out.samples:
            assert s.device_id == "p1" and s.signal == "speed"
            # `speed` has no role, so a NaN is kept as sent (edge.model SignalSpec.check): the
            # type is what must hold.
            assert s.quality is Quality.BAD or isinstance(s.value, float)
        assert all(r.reason in (BAD_SPARKPLUG, UNMAPPABLE, "unknown_device") for r in out.refused)
