"""Building and connecting a paho client from an MqttConnection: shared by the per-device
connection (connectors/mqtt/source.py) and the shared broker connection (shared.py)."""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.security import credentials, tls_context
from edge.model import now_ns

log = logging.getLogger("shangyun.connectors.mqtt")

# Maximum Packet Size counts the whole PUBLISH: fixed header, topic, packet id, properties.
# This much room over max_payload_bytes covers any sane topic; the exact payload check is ours.
_PACKET_HEADROOM = 4096
_MAX_PACKET = 268_435_455  # the largest packet MQTT can encode


_READ_SIZE = 65536

Telemetry = tuple[str, bytes, int, int]
"""(topic, payload, qos, mid) of one received PUBLISH."""
TelemetryFn = Callable[[list[Telemetry]], None]
"""Called on paho's network thread with the PUBLISHes read together (one or many), in order."""

_PUBLISH = 0x30


def arrival_times(count: int) -> range:
    """Arrival times (ns) of `count` messages read from the socket together: now, then one
    nanosecond apart. Each needs its own instant: a message without a timestamp is stored at
    its arrival, and the store keeps one row per device, signal and time."""
    now = now_ns()
    return range(now, now + count)


def parse_publish(header: int, buf: bytes | bytearray, start: int, end: int, v5: bool) -> Telemetry | None:
    """The PUBLISH whose variable header and payload are `buf[start:end]`, when it is plain
    telemetry: QoS 0 or 1, a topic name (not an MQTT 5 topic alias alone), no MQTT 5 properties,
    a UTF-8 topic. None for anything else, which paho's own reader then decodes or refuses."""
    qos = (header & 0x06) >> 1
    if qos > 1 or end - start < 2:
        return None
    topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
    pos = topic_end + 2 if qos else topic_end
    if topic_end == start + 2 or pos > end:
        return None
    if v5:
        if pos >= end or buf[pos] != 0:     # a properties length of 0 is one zero byte
            return None
        pos += 1
    try:
        topic = buf[start + 2:topic_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return topic, bytes(buf[pos:end]), qos, ((buf[topic_end] << 8) | buf[topic_end + 1]) if qos else 0


class BufferedClient(mqtt.Client):
    """paho reading the socket in large chunks, and telemetry straight from them.

    paho 2.2 reads each packet with three or more recv() calls (the command byte, each length
    byte, then the rest) and goes back to select() after every packet: four or five system calls
    per telemetry message, a third of the gateway's CPU at 10,000 messages/s (py-spy,
    tests/bench/bench_mqtt.py). Here recv() fills a buffer of up to 64 KiB that paho's packet
    reader takes its bytes from, and `loop_read` goes on until the buffer is empty, so a
    buffered packet never waits for the socket to become readable again. paho's reader already
    handles short reads (its state is kept in `_in_packet`), so a packet split across two
    buffers is read as it would be across two TCP segments.

    With `on_telemetry` set, every complete telemetry PUBLISH in the buffer (`parse_publish`)
    is taken from it directly and handed over in one call per buffer, without paho's per-packet
    reader (its dict bookkeeping and a slice per length byte), MQTTMessage, PublishPacket,
    Properties and topic matcher: most of paho's thread (py-spy, tests/bench/bench_mqtt_connector.py).
    Only between packets (paho holds no half-read one) and only up to the first packet that is
    something else (CONNACK, SUBACK, PINGRESP, QoS 2, properties) or is not whole in the
    buffer: that one goes through paho's reader, so the order of packets is kept and paho sees
    everything that is not telemetry exactly as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._roff = 0
        self.on_telemetry: TelemetryFn | None = None

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """A PUBLISH paho's reader read (the first of a buffer, or one split across buffers)."""
        fast = self.on_telemetry
        if fast is not None:
            packet = self._in_packet["packet"]
            msg = parse_publish(self._in_packet["command"], packet, 0, len(packet), self._protocol == mqtt.MQTTv5)
            if msg is not None:
                fast([msg])
                return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def _take_telemetry(self) -> bool:
        """Hand over the whole telemetry PUBLISHes at the front of the buffer; False if none."""
        buf, off, size = self._rbuf, self._roff, len(self._rbuf)
        v5 = self._protocol == mqtt.MQTTv5
        taken: list[Telemetry] = []
        while off < size:
            header = buf[off]
            if header & 0xF0 != _PUBLISH:
                break
            length, shift, i = 0, 0, off + 1
            while i < size and shift < 28:      # the remaining length: at most 4 bytes
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break       # not whole here, or malformed: paho's reader decides
            end = i + length
            if end > size:
                break
            msg = parse_publish(header, buf, i, end, v5)
            if msg is None:
                break
            taken.append(msg)
            off = end
        if not taken:
            return False
        self._roff = off
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()   # what paho's reader does per packet
        self.on_telemetry(taken)    # type: ignore[misc]
        return True

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._roff >= len(self._rbuf):
            self._rbuf, self._roff = super()._sock_recv(_READ_SIZE), 0   # may raise BlockingIOError
        chunk = self._rbuf[self._roff:self._roff + bufsize]
        self._roff += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)     # recv()s into the buffer and reads one packet
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._roff < len(self._rbuf):
            if self.on_telemetry is not None and self._in_packet["command"] == 0 and self._take_telemetry():
                continue
            rc = super().loop_read(max_packets)
        return rc


def new_client(cfg: MqttConnection, client_id: str, userdata: Any) -> BufferedClient:
    """A client with credentials and TLS set, no callbacks; raises SourceError for unreadable
    credentials or TLS files."""
    v5 = cfg.protocol == "5"
    client = BufferedClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, userdata=userdata,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else cfg.clean_session,
        # The supervisor (or the shared connection) reconnects, with backoff and offline marking.
        reconnect_on_failure=False, manual_ack=True)
    client.connect_timeout = cfg.timeout_s
    creds = credentials(cfg)
    if creds.username is not None:
        client.username_pw_set(creds.username, creds.password)
    if cfg.tls:
        client.tls_set_context(tls_context(cfg))
    return client


def connect_blocking(client: mqtt.Client, cfg: MqttConnection) -> None:
    """CONNECT (blocking: run it in a thread), with the session and Receive Maximum of `cfg`."""
    if cfg.protocol != "5":
        client.connect(cfg.host, cfg.port, cfg.keepalive_s)
        return
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if cfg.clean_session else cfg.session_expiry_s
    props.ReceiveMaximum = cfg.receive_maximum
    if cfg.send_maximum_packet_size:
        props.MaximumPacketSize = min(cfg.max_payload_bytes + _PACKET_HEADROOM, _MAX_PACKET)
    client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=cfg.clean_session, properties=props)


def refusal(cfg: MqttConnection, reason: Any) -> str:
    hint = ""
    if cfg.protocol == "5" and "protocol" in str(reason).lower():
        hint = " (a broker without MQTT 5 needs `protocol: 3.1.1`)"
    return f"broker refused: {reason}{hint}"


_PUBACK = 0x40
_PUBACK_HEAD = 0x4002_0000    # a PUBACK as a big-endian word: 0x40, remaining length 2, the packet id


def send_acks(client: mqtt.Client, mids: Sequence[int]) -> None:
    """PUBACKs (QoS 1) for `mids`, in this order, as ONE packet on paho's out-queue.

    paho's `ack()` queues each PUBACK on its own: a wake-up write to its self-pipe and a send()
    per message, a tenth of the gateway's CPU at 10,000 messages/s (py-spy, bench_mqtt). A
    commit settles hundreds at once, so they are joined here into one buffer (4 bytes each:
    MQTT 3.1.1 and MQTT 5 with reason Success and no properties, which may leave out reason and
    properties, §3.4.2.1) and queued as one out-packet through paho's own `_packet_queue`, which
    is what `ack()` uses: paho's thread writes out-packets one after the other (a partial send
    resumes where it stopped), so nothing of PINGREQ, SUBSCRIBE or a PUBLISH can land inside
    it. Thread-safe with loop_start() as `ack()` is. Inbound QoS 1 is not tracked by paho under
    manual acks (`_in_messages` holds QoS 2 only), so there is no state to update."""
    queue = getattr(client, "_packet_queue", None)
    if queue is None:       # a paho without it: its public, per-message ack
        for mid in mids:
            client.ack(mid, 1)
        return
    if mids:
        queue(_PUBACK, struct.pack(f">{len(mids)}I", *[_PUBACK_HEAD | mid for mid in mids]), 0, 0)


# A topic filter nobody subscribes to: unsubscribing from it is a round trip with no effect.
BARRIER_TOPIC = "shangyun/close-barrier"
# The longest a clean close waits for that round trip (a healthy broker answers in milliseconds;
# a link that died unnoticed must not hold up a stop for long).
_CLOSE_BARRIER_S = 2.0


async def broker_has_read_all(client: mqtt.Client, timeout_s: float) -> bool:
    """Wait until the broker has read every packet queued on `client` before now, above all the
    PUBACKs of stored messages; False when the link is down or the answer does not come in
    `timeout_s`. Run it before a clean disconnect: closing right after queueing PUBACKs can
    reset the connection before the broker reads them, and it then sends those messages
    again after a restart (not a loss, the store keeps one sample per signal and instant, but
    work done twice; seen in 3 of 8 runs of tests/connectors/test_mqtt_acks.py under load).

    How: an UNSUBSCRIBE of BARRIER_TOPIC, then its UNSUBACK. paho writes its out-packets in
    order and a broker handles one connection's packets in order, so the UNSUBACK comes after
    the broker has handled everything sent before it. MQTT answers an UNSUBSCRIBE of a filter
    with no subscription too (MQTT 5: reason 0x11). Nothing else here unsubscribes, so any
    UNSUBACK on this client is this one's."""
    if not client.is_connected():
        return False
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def on_unsubscribe(*_args: Any) -> None:   # paho's thread
        try:
            loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(None))
        except RuntimeError:   # the loop is closed: nobody waits any more
            pass

    client.on_unsubscribe = on_unsubscribe
    try:
        rc, _ = client.unsubscribe(BARRIER_TOPIC)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        await asyncio.wait_for(answered, timeout_s)
        return True
    except (asyncio.TimeoutError, OSError, ValueError):
        return False
    finally:
        client.on_unsubscribe = None


async def close_cleanly(client: mqtt.Client, cfg: MqttConnection, what: str) -> None:
    """Close `client` (per device or shared): the broker reads the PUBACKs queued so far
    (`broker_has_read_all`, at most 2 s or `cfg.timeout_s`), then DISCONNECT, then paho's
    thread is stopped. `what` names the connection in the debug line of a failed DISCONNECT."""
    await broker_has_read_all(client, min(_CLOSE_BARRIER_S, cfg.timeout_s))
    try:
        client.disconnect()
    except Exception:  # noqa: BLE001 - the link is gone anyway
        log.debug("%s: disconnect failed", what, exc_info=True)
    await asyncio.to_thread(client.loop_stop)
