"""Building and connecting a paho client from an MqttConnection: shared by the per-device
connection (connectors/mqtt/source.py) and the shared broker connection (shared.py)."""
from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.security import credentials, tls_context

# Maximum Packet Size counts the whole PUBLISH: fixed header, topic, packet id, properties.
# This much room over max_payload_bytes covers any sane topic; the exact payload check is ours.
_PACKET_HEADROOM = 4096
_MAX_PACKET = 268_435_455  # the largest packet MQTT can encode


_READ_SIZE = 65536


class BufferedClient(mqtt.Client):
    """paho reading the socket in large chunks.

    paho 2.2 reads each packet with three or more recv() calls (the command byte, each length
    byte, then the rest) and goes back to select() after every packet: four or five system calls
    per telemetry message, a third of the gateway's CPU at 10,000 messages/s (py-spy,
    tests/bench/bench_mqtt.py). Here recv() fills a buffer of up to 64 KiB that paho's packet
    reader takes its bytes from, and `loop_read` goes on until the buffer is empty, so a
    buffered packet never waits for the socket to become readable again. paho's reader already
    handles short reads (its state is kept in `_in_packet`), so a packet split across two
    buffers is read as it would be across two TCP segments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._roff = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._roff >= len(self._rbuf):
            self._rbuf, self._roff = super()._sock_recv(_READ_SIZE), 0   # may raise BlockingIOError
        chunk = self._rbuf[self._roff:self._roff + bufsize]
        self._roff += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._roff < len(self._rbuf):
            rc = super().loop_read(max_packets)
        return rc


def new_client(cfg: MqttConnection, client_id: str, userdata: Any) -> mqtt.Client:
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


def send_ack(client: mqtt.Client, mid: int) -> None:
    # Thread-safe with loop_start(): paho only queues the PUBACK and wakes its network thread.
    client.ack(mid, 1)
