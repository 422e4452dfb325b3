"""OPC UA source: one asyncua session, one subscription over all signal nodes.

The only module importing asyncua. Notifications are read in the subscription's iterator
mode with the DISCONNECT overflow policy: if we fall so far behind that asyncua's queue fills,
the link is dropped and samples() raises SourceError, so nothing is discarded silently.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator

from asyncua import Client, ua
from asyncua.common.subscription import (
    DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription)
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from connectors.opcua.config import NodeAddress, OpcUaConnection, ParsedNodeId, parse_node_id
from connectors.opcua.planner import batches
from connectors.opcua.security import (
    ServerTrust, default_application_uri, own_certificate, resolve_password)
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.timeconv import datetime_to_ns
from connectors.validation import address_of, connection_of
from edge.errors import SourceError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample, now_ns

log = logging.getLogger("shangyun.connectors.opcua")

BAD_VALUE = ""  # value of a BAD sample: there is no reading, and "" cannot pass for one
QUEUE_MAX = 10_000
MAX_BATCH = 1_000

_LINK_ERRORS = (OSError, asyncio.TimeoutError, ConnectionError, ua.UaError)

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}

_BUILD_INFO = {
    "product_name": ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName,
    "manufacturer_name": ua.ObjectIds.Server_ServerStatus_BuildInfo_ManufacturerName,
    "software_version": ua.ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion,
    "product_uri": ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductUri,
    "build_number": ua.ObjectIds.Server_ServerStatus_BuildInfo_BuildNumber,
}


class _HideIdentityTokens(logging.Filter):
    """asyncua logs every request it sends at debug level, ActivateSession's user identity token
    included, whose password is plain text when the channel itself is encrypted: a gateway run
    at debug must not write users' passwords to its log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, ua.ActivateSessionRequest) for a in record.args):
            record.args = tuple("ActivateSessionRequest(<identity token hidden>)"
                                if isinstance(a, ua.ActivateSessionRequest) else a for a in record.args)
        return True


logging.getLogger("asyncua.client.ua_client.UASocketProtocol").addFilter(_HideIdentityTokens())


class _QueueFullAtDebug(logging.Filter):
    """asyncua logs an ERROR for every notification that finds the subscription's queue full,
    thousands when a fast server outruns the gateway; the source reports that outage itself,
    once, saying why (fell behind). The library's lines are kept for debug runs only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "event queue full" in record.msg:
            return logging.getLogger("asyncua").getEffectiveLevel() <= logging.DEBUG
        return True


logging.getLogger("asyncua.common.subscription").addFilter(_QueueFullAtDebug())


def quality_of(status: ua.StatusCode | None) -> Quality:
    """The two top bits of an OPC UA status code: 00 good, 01 uncertain, 10/11 bad."""
    if status is None:
        return Quality.GOOD
    severity = (status.value >> 30) & 0b11
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


class OpcUaSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(OpcUaConnection, device)
        self._addresses = {s.name: address_of(NodeAddress, device, s) for s in device.signals}
        # The last reading delivered per signal (device timestamp, value, quality), kept across
        # reconnects: a new subscription's first notification repeats the current value, and a
        # poll re-reads an unchanged one; neither is a new reading.
        self._last: dict[str, tuple[int, Any, Quality]] = {}
        self._poll_nodes: list[ua.NodeId] = []
        self._signals = {s.name: s for s in device.signals}
        self._client: Client | None = None
        self._sub: Subscription | None = None
        self._names: dict[ua.NodeId, list[str]] = {}
        self._lost: Exception | None = None
        self._errors = PayloadErrorReporter(log, device.id)

    async def connect(self) -> IdentityEvidence:
        await self.close()
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.watchdog_interval_s)
        # asyncua asks for one hour and warns on every connect when a server grants less;
        # ten minutes is what common servers (asyncua's included) allow, and the watchdog
        # keeps the session alive anyway.
        client.session_timeout = 600_000
        client.connection_lost_callback = self._on_connection_lost
        self._client, self._lost = client, None
        try:
            if cfg.username is not None:
                client.set_user(cfg.username)
                client.set_password(resolve_password(cfg.password, cfg.password_env, cfg.password_file) or "")
            if cfg.security_policy != "None":
                await self._secure(client)
            await asyncio.wait_for(client.connect(), cfg.timeout_s * 2)
            namespaces = await client.get_namespace_array()
            identity = await self._identity(client, namespaces)
            self._names = self._node_names(namespaces)
            if cfg.mode == "subscribe":
                await self._subscribe(client)
            else:
                self._poll_nodes = list(self._names)
            return identity
        except SourceError:
            await self.close()
            raise
        except ua.UaStatusCodeError as err:
            await self.close()
            raise SourceError(f"{cfg.endpoint}: server refused: {_status_text(err)}") from err
        except Exception as err:
            # asyncua reports some refusals as bare AssertionError/KeyError; the server's own
            # reason, when it sent one, was logged by asyncua at debug level.
            await self.close()
            log.debug("device %s: connect failed", self.device.id, exc_info=True)
            raise SourceError(f"{cfg.endpoint}: {type(err).__name__}: {err}".rstrip(": ")) from err

    async def _secure(self, client: Client) -> None:
        cfg = self.config
        pki = Path(cfg.pki_dir)
        client.application_uri = cfg.application_uri or default_application_uri()
        if cfg.certificate_path and cfg.private_key_path:
            cert, key = cfg.certificate_path, cfg.private_key_path
        else:
            own = await asyncio.to_thread(own_certificate, pki, client.application_uri)
            cert, key = str(own.cert_path), str(own.key_path)
        trust = ServerTrust(pki, cfg.endpoint, mode=cfg.server_trust,
                            trust_list_dir=Path(cfg.trust_list_dir) if cfg.trust_list_dir else None)

        async def validate(server_cert: x509.Certificate, _app: Any) -> None:
            trust.check(server_cert.public_bytes(Encoding.DER))

        client.certificate_validator = validate
        await client.set_security(
            _POLICIES[cfg.security_policy], cert, key, server_certificate=cfg.server_certificate_path,
            mode=getattr(ua.MessageSecurityMode, cfg.security_mode))

    @property
    def poll_interval_s(self) -> float | None:
        """Set in polling mode only: the supervisor marks a stall of a polled source."""
        return self.config.poll_interval_s if self.config.mode == "poll" else None

    async def samples(self) -> AsyncIterator[list[Sample]]:
        if self._client is None:
            raise SourceError(f"{self.config.endpoint}: samples() before connect()")
        stream = self._subscribed() if self.config.mode == "subscribe" else self._polled()
        async for batch in stream:
            yield batch

    async def _subscribed(self) -> AsyncIterator[list[Sample]]:
        sub = self._sub
        if sub is None:
            raise SourceError(f"{self.config.endpoint}: samples() before connect()")
        while True:
            self._raise_if_lost()
            event = await sub.next_event(timeout=self.config.watchdog_interval_s)
            if event is None:
                continue
            batch: list[Sample] = []
            count = 0
            while event is not None:
                batch.extend(self._handle(event))
                count += 1
                if count >= MAX_BATCH or self._lost is not None:
                    break  # what arrived before a loss is still delivered; the loop then raises
                event = _queued(sub)
            if batch:
                yield batch

    async def _polled(self) -> AsyncIterator[list[Sample]]:
        client, cfg = self._client, self.config
        assert client is not None
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        nodes = [client.get_node(n) for n in self._poll_nodes]
        while True:
            self._raise_if_lost()
            try:
                values = await asyncio.wait_for(client.read_attributes(nodes), cfg.timeout_s)
            except (*_LINK_ERRORS, ValueError) as err:
                raise SourceError(f"{cfg.endpoint}: read failed: {err or type(err).__name__}") from err
            batch: list[Sample] = []
            for node_id, dv in zip(self._poll_nodes, values):
                value = dv.Value.Value if dv.Value is not None else None
                batch.extend(self._samples_of(node_id, dv, value))
            if batch:
                yield batch
            next_at = max(next_at + cfg.poll_interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def close(self) -> None:
        client, self._client, self._sub = self._client, None, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), self.config.timeout_s)
            except Exception:  # the link may already be dead; closing must not fail
                log.debug("device %s: disconnect failed", self.device.id, exc_info=True)

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise SourceError(f"{self.config.endpoint}: connection lost: {self._lost or type(self._lost).__name__}")

    async def _on_connection_lost(self, exc: Exception) -> None:
        if self._lost is None:  # the first reason is the one to report (fell behind, say)
            self._lost = exc

    def _fell_behind(self, client: Client) -> None:
        if self._lost is None:
            self._lost = ConnectionError(
                f"fell behind: {QUEUE_MAX} notifications waiting (the gateway takes them slower than "
                f"the server sends); reconnecting")
        client.uaclient.notify_transport_lost()

    def _handle(self, event: Any) -> list[Sample]:
        if isinstance(event, StatusChangeEvent):
            status = event.notification.Status
            if quality_of(status) is Quality.BAD and self._lost is None:
                self._lost = ConnectionError(f"subscription status {status.name}")
            return []
        if not isinstance(event, DataChangeEvent):
            return []
        return self._samples_of(event.node.nodeid, event.data.monitored_item.Value, event.value)

    def _samples_of(self, node_id: ua.NodeId, dv: ua.DataValue | None, raw: Any) -> list[Sample]:
        ts_ns, from_device = _timestamp_ns(dv)
        status_q = quality_of(dv.StatusCode if dv is not None else None)
        out = []
        for name in self._names.get(node_id, ()):
            if from_device:
                seen = (ts_ns, raw, status_q)
                if self._last.get(name) == seen:
                    continue  # already delivered: a re-sent current value, not a new reading
                self._last[name] = seen
            if raw is None or status_q is Quality.BAD:
                out.append(Sample(self.device.id, name, ts_ns, BAD_VALUE, Quality.BAD))
                continue
            value_in = raw
            if not isinstance(value_in, (bool, int, float, str)):
                value_in = str(value_in)  # LocalizedText, enums...: keep what the server said, as text
            value, conv_q, problem = self._signals[name].check(value_in)
            if problem is not None:   # wrong type or range for the role: counted, not GOOD
                self._errors.report(problem, signal=name, node=str(node_id))
            out.append(Sample(self.device.id, name, ts_ns, value, max(status_q, conv_q)))
        return out

    def _resolve(self, parsed: ParsedNodeId, namespaces: list[str]) -> str:
        if parsed.namespace_uri is None:
            return parsed.with_index(parsed.namespace_index or 0)
        try:
            return parsed.with_index(namespaces.index(parsed.namespace_uri))
        except ValueError:
            raise SourceError(f"{self.config.endpoint}: server has no namespace {parsed.namespace_uri!r} "
                              f"(it has {namespaces})") from None

    def _node_names(self, namespaces: list[str]) -> dict[ua.NodeId, list[str]]:
        names: dict[ua.NodeId, list[str]] = {}
        for name, address in self._addresses.items():
            node_id = ua.NodeId.from_string(self._resolve(address.parsed, namespaces))
            names.setdefault(node_id, []).append(name)
        if not names:
            raise SourceError(f"device {self.device.id}: no signals to subscribe to")
        return names

    def _item_request(self, sub: Subscription, client: Client, node_id: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        """One monitored item with the parameters of its (first) signal, else the connection's."""
        cfg = self.config
        mon = self._addresses[self._names[node_id][0]].monitoring
        sampling = mon.sampling_interval_ms if mon.sampling_interval_ms is not None else cfg.sampling_interval_ms
        mfilter = None
        if mon.deadband is not None:
            mfilter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute if mon.deadband.type == "absolute" else ua.DeadbandType.Percent,
                DeadbandValue=mon.deadband.value)
        return sub._make_monitored_item_request(
            client.get_node(node_id), ua.AttributeIds.Value, mfilter, mon.queue_size or cfg.queue_size,
            ua.MonitoringMode.Reporting, cfg.publishing_interval_ms if sampling is None else sampling)

    async def _subscribe(self, client: Client) -> None:
        names = self._names
        sub = await client.create_subscription(
            self.config.publishing_interval_ms, handler=None,
            queue_maxsize=QUEUE_MAX, overflow=OverflowPolicy.DISCONNECT)
        sub.set_overflow_disconnect_handler(lambda: self._fell_behind(client))
        self._sub = sub
        failed: list[str] = []
        for chunk in batches(list(names), self.config.max_items_per_call):
            results = await sub.create_monitored_items([self._item_request(sub, client, n) for n in chunk])
            for node_id, result in zip(chunk, results):
                if isinstance(result, ua.StatusCode):
                    failed.append(f"{node_id.to_string()} ({result.name})")
                    del names[node_id]
        if failed:
            # A missing node is a template/device mismatch: say so, and keep the good ones.
            self._errors.report(SourceError(f"cannot subscribe to {', '.join(failed)}"), what="subscribe")
        if not names:
            raise SourceError(f"{self.config.endpoint}: none of the signal nodes could be subscribed: "
                              f"{', '.join(failed)}")

    async def _identity(self, client: Client, namespaces: list[str]) -> IdentityEvidence:
        app_uri, cert = "", client.security_policy.peer_certificate or b""
        try:
            for ep in await client.get_endpoints():
                app_uri = app_uri or (ep.Server.ApplicationUri or "")
                cert = cert or (ep.ServerCertificate or b"")
        except ua.UaStatusCodeError as err:
            log.info("device %s: GetEndpoints refused (%s); identity without it", self.device.id, err)
        details = await self._read_strings(client, {k: ua.NodeId(v) for k, v in _BUILD_INFO.items()})
        serial = ""
        if self.config.serial_node:
            node = ua.NodeId.from_string(self._resolve(parse_node_id(self.config.serial_node), namespaces))
            serial = (await self._read_strings(client, {"serial": node})).get("serial", "")
        return IdentityEvidence(
            protocol="opcua", endpoint=self.config.endpoint, application_uri=app_uri,
            serial_number=serial,
            certificate_sha256=hashlib.sha256(_first_certificate(cert)).hexdigest() if cert else "",
            details={**{k: v for k, v in details.items() if v},
                     "security": f"{self.config.security_policy}/{self.config.security_mode}"})

    async def _read_strings(self, client: Client, nodes: dict[str, ua.NodeId]) -> dict[str, str]:
        """Values as text; a node the server lacks is left out rather than failing identity."""
        out: dict[str, str] = {}
        for key, node_id in nodes.items():
            try:
                value = await client.get_node(node_id).read_value()
            except ua.UaStatusCodeError as err:
                log.info("device %s: cannot read %s: %s", self.device.id, node_id.to_string(), err)
                continue
            out[key] = "" if value is None else str(getattr(value, "Text", value))
        return out


def _queued(sub: Subscription) -> Any:
    """The next event already queued, or None: the notifications of one publish response are
    queued together, so draining without a timer per event (asyncio.wait_for costs more than
    handling the event) loses nothing. A None in the queue (closed) ends the drain too; the next
    next_event() sees the close again."""
    queue = sub._event_queue
    if queue is None or queue.empty():
        return None
    event = queue.get_nowait()
    if event is None:
        queue.put_nowait(None)
    return event


def _status_text(err: ua.UaStatusCodeError) -> str:
    code = getattr(err, "code", None)
    if code is None:
        return str(err)
    status = ua.StatusCode(code)
    return f"{status.name} ({status.doc})" if status.doc else status.name


def _timestamp_ns(dv: ua.DataValue | None) -> tuple[int, bool]:
    """The source timestamp, else the server's, else now; and whether it came from the device."""
    for ts in (dv.SourceTimestamp, dv.ServerTimestamp) if dv is not None else ():
        if ts is not None:
            return datetime_to_ns(ts), True
    return now_ns(), False


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send theirs with its issuers)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    if der[1] < 0x80:
        return der[: 2 + der[1]]
    n = der[1] & 0x7F
    return der[: 2 + n + int.from_bytes(der[2:2 + n], "big")]
