"""OPC UA source: one asyncua session, one subscription over all signal nodes.

The only module importing asyncua. Notifications are read in the subscription's iterator
mode with the DISCONNECT overflow policy: if we fall so far behind that asyncua's queue fills,
the link is dropped and samples() raises SourceError, so nothing is discarded silently.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from pathlib import Path
from contextlib import contextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

from asyncua import Client, ua
from asyncua.common.subscription import (
    DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription)
from asyncua.crypto import security_policies
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from connectors.opcua.config import NodeAddress, OpcUaConnection, parse_target
from connectors.opcua.monitoring import item_request, percent_deadband_ranges, percent_refusal, record
from connectors.opcua.paths import BrowsePath
from connectors.opcua.planner import batches
from connectors.opcua.resolve import Resolver, Unresolved
from connectors.opcua.sessions import SharedSession, pool
from connectors.opcua.values import GATEWAY, Refused, quality_of, scalar, stamp, status_name
from connectors.opcua.security import (
    ServerTrust, default_application_uri, own_certificate, resolve_password)
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.validation import address_of, connection_of
from edge.errors import ConfigError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample

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


class OpcUaSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(OpcUaConnection, device)
        addresses = {s.name: address_of(NodeAddress, device, s) for s in device.signals}
        # Built once: a string address makes a new MonitoredNode on every .monitoring.
        self._monitoring = {name: a.monitoring for name, a in addresses.items()}
        self._targets = {name: a.target for name, a in addresses.items()}
        if self.config.node_root is None:
            relative = [n for n, t in self._targets.items() if isinstance(t, BrowsePath) and not t.absolute]
            if relative:
                raise ConfigError(f"device {device.id}: signals {', '.join(relative)} have relative browse "
                                  f"paths, which start at the connection's node_root; set node_root or "
                                  f"start the paths with /Objects/...")
        # The last reading delivered per signal (device timestamp, value, quality), kept across
        # reconnects: a new subscription's first notification repeats the current value, and a
        # poll re-reads an unchanged one; neither is a new reading.
        self._last: dict[str, tuple[int, Any, Quality]] = {}
        self._poll_nodes: list[ua.NodeId] = []
        self._signals = {s.name: s for s in device.signals}
        self._client: Client | None = None
        self._client_cert: str | None = None   # the client certificate presented, for refusals
        self._session: SharedSession | None = None
        # Machines behind one aggregating server (each with its node_root) share its session.
        cfg = self.config
        self._share_key = None if cfg.node_root is None else (
            cfg.endpoint, cfg.security_policy, cfg.security_mode, cfg.username, cfg.user_certificate_path,
            cfg.certificate_path, cfg.application_uri, cfg.pki_dir, cfg.server_trust, cfg.timeout_s,
            cfg.watchdog_interval_s)
        self._sub: Subscription | None = None
        self._names: dict[ua.NodeId, list[str]] = {}
        self._lost: Exception | None = None
        self._errors = PayloadErrorReporter(log, device.id)
        self._time_sources: Counter[str] = Counter()
        self._status_codes: Counter[str] = Counter()
        self._refused: dict[str, str] = {}       # signal -> why, as of the last connect
        self._refusals_reported: set[tuple[str, str]] = set()

    @property
    def refused_signals(self) -> list[str]:
        """Signals not collected since the last connect (unresolved address, refused item)."""
        return sorted(self._refused)

    def time_sources(self) -> dict[str, int]:
        """Samples per timestamp origin since start: device (SourceTimestamp), server
        (ServerTimestamp), gateway (neither: the time of arrival)."""
        return dict(self._time_sources)

    def status_counters(self) -> dict[str, Any]:
        """What the supervisor's `counters` adds to this device's status."""
        return {"status_codes": self.status_codes()}

    def status_codes(self) -> dict[str, int]:
        """Samples per OPC UA status code other than Good since start (the code behind an
        UNCERTAIN or BAD quality: UncertainLastUsableValue, BadSensorFailure...)."""
        return dict(self._status_codes)

    async def connect(self) -> IdentityEvidence:
        await self.close()
        cfg = self.config
        self._lost = None
        try:
            if self._share_key is not None:
                self._session = await pool().acquire(self._share_key, self._open_client, self._on_connection_lost)
                client = self._session.client
            else:
                client = await self._open_client(self._on_connection_lost)
            self._client = client
            resolver = Resolver(client, await client.get_namespace_array(), max_per_call=cfg.max_items_per_call)
            if cfg.node_root is not None:
                try:
                    resolver = await resolver.with_root(cfg.node_root, parse_target(cfg.node_root))
                except Unresolved as err:
                    raise SourceError(f"{cfg.endpoint}: {err}") from None
            identity = await self._identity(client, resolver)
            self._refused = {}
            self._names = await self._node_names(resolver)
            if cfg.mode == "subscribe":
                await self._subscribe(client)
            else:
                self._poll_nodes = list(self._names)
            self._report_refusals()
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

    async def _open_client(self, on_lost: Callable[[Exception], Awaitable[None]]) -> Client:
        """A connected client: secure channel, session, user identity."""
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.watchdog_interval_s)
        # asyncua asks for one hour and warns on every connect when a server grants less;
        # ten minutes is what common servers (asyncua's included) allow, and the watchdog
        # keeps the session alive anyway.
        client.session_timeout = 600_000
        client.connection_lost_callback = on_lost
        channel = _ChannelRefusal(client)
        try:
            await self._user_identity(client)
            if cfg.security_policy != "None":
                await self._secure(client)
            with _channel_refusals_named(client, channel):
                await asyncio.wait_for(client.connect(), cfg.timeout_s * 2)
        except ua.UaStatusCodeError as err:
            await _disconnect(client, cfg.timeout_s, self.device.id)
            # Only the channel's refusal is about our client certificate; a refused user
            # certificate comes later, at ActivateSession, and keeps the server's own words.
            if err is channel.refused and err.code in _CLIENT_CERT_REFUSALS:
                raise SourceError(_client_cert_refused(cfg.endpoint, _status_text(err), self._client_cert)) from err
            raise
        except BaseException:
            await _disconnect(client, cfg.timeout_s, self.device.id)
            raise
        return client

    async def _user_identity(self, client: Client) -> None:
        cfg = self.config
        if cfg.username is not None:
            client.set_user(cfg.username)
            client.set_password(resolve_password(cfg.password, cfg.password_env, cfg.password_file) or "")
        elif cfg.user_certificate_path is not None and cfg.user_private_key_path is not None:
            try:
                await client.load_client_certificate(cfg.user_certificate_path)
                await client.load_private_key(Path(cfg.user_private_key_path))
            except (OSError, ValueError) as err:
                raise ConfigError(f"device {self.device.id}: user certificate "
                                  f"{cfg.user_certificate_path} / key {cfg.user_private_key_path}: "
                                  f"{getattr(err, 'strerror', None) or err}") from None

    async def _secure(self, client: Client) -> None:
        cfg = self.config
        pki = Path(cfg.pki_dir)
        client.application_uri = cfg.application_uri or default_application_uri()
        if cfg.certificate_path and cfg.private_key_path:
            cert, key = cfg.certificate_path, cfg.private_key_path
        else:
            own = await asyncio.to_thread(own_certificate, pki, client.application_uri)
            cert, key = str(own.cert_path), str(own.key_path)
        self._client_cert = cert
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
        client, self._client, sub, self._sub = self._client, None, self._sub, None
        session, self._session = self._session, None
        timeout = self.config.timeout_s
        if session is not None:
            if sub is not None and not session.lost:
                try:   # the others on this session keep theirs
                    await asyncio.wait_for(sub.delete(), timeout)
                except Exception:  # noqa: BLE001 - the link may be dying; release it anyway
                    log.debug("device %s: deleting the subscription failed", self.device.id, exc_info=True)
            await pool().release(session, self._on_connection_lost, timeout)
        elif client is not None:
            await _disconnect(client, timeout, self.device.id)

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
        ts_ns, origin = stamp(dv)
        status = dv.StatusCode if dv is not None else None
        status_q = quality_of(status)
        out = []
        for name in self._names.get(node_id, ()):
            if origin != GATEWAY:
                seen = (ts_ns, raw, status_q)
                if self._last.get(name) == seen:
                    continue  # already delivered: a re-sent current value, not a new reading
                self._last[name] = seen
            self._time_sources[origin] += 1
            if status_q is not Quality.GOOD:
                self._status_codes[status_name(status)] += 1
            out.append(self._sample(name, node_id, ts_ns, raw, status_q))
        return out

    def _sample(self, name: str, node_id: ua.NodeId, ts_ns: int, raw: Any, status_q: Quality) -> Sample:
        if raw is None or status_q is Quality.BAD:
            return Sample(self.device.id, name, ts_ns, BAD_VALUE, Quality.BAD)
        try:
            value_in = scalar(raw, index=self._monitoring[name].index,
                              datetimes=self.config.datetime_values)
        except Refused as err:
            self._errors.report(err, signal=name, node=node_id.to_string())
            return Sample(self.device.id, name, ts_ns, BAD_VALUE, Quality.BAD)
        value, conv_q, problem = self._signals[name].check(value_in)
        if problem is not None:   # wrong type or range for the role: counted, not GOOD
            self._errors.report(problem, signal=name, node=node_id.to_string())
        return Sample(self.device.id, name, ts_ns, value, max(status_q, conv_q))

    def _refuse(self, name: str, why: str) -> None:
        self._refused[name] = why

    def _report_refusals(self) -> None:
        """Each refusal once per source, however often it reconnects; other signals go on."""
        for name, why in sorted(self._refused.items()):
            if (name, why) in self._refusals_reported:
                continue
            self._refusals_reported.add((name, why))
            self._errors.report_distinct(SourceError(f"signal {name} not collected: {why}"), signal=name)

    async def _node_names(self, resolver: Resolver) -> dict[ua.NodeId, list[str]]:
        found, failed = await resolver.resolve(self._targets)
        for name, why in failed.items():
            self._refuse(name, why)
        names: dict[ua.NodeId, list[str]] = {}
        for name, node_id in found.items():
            names.setdefault(node_id, []).append(name)
        if not names:
            self._report_refusals()
            raise SourceError(f"device {self.device.id}: none of the signal addresses resolved: "
                              + "; ".join(f"{n}: {w}" for n, w in sorted(failed.items())))
        return names

    async def _percent_checked(self, client: Client, names: dict[ua.NodeId, list[str]]) -> None:
        """Drops (and refuses) the items whose percent deadband has no EURange to refer to."""
        percent = [n for n, signals in names.items()
                   if (db := self._monitoring[signals[0]].deadband) is not None and db.type == "percent"]
        if not percent:
            return
        problems = await percent_deadband_ranges(client, percent, max_per_call=self.config.max_items_per_call)
        for node_id, why in problems.items():
            if why is not None:
                for name in names.pop(node_id):
                    self._refuse(name, percent_refusal(node_id.to_string(), why))

    async def _subscribe(self, client: Client) -> None:
        names = self._names
        await self._percent_checked(client, names)
        sub = await client.create_subscription(
            self.config.publishing_interval_ms, handler=None,
            queue_maxsize=QUEUE_MAX, overflow=OverflowPolicy.DISCONNECT)
        sub.set_overflow_disconnect_handler(lambda: self._fell_behind(client))
        self._sub = sub
        recorder = record(sub)
        for chunk in batches(list(names), self.config.max_items_per_call):
            requests = [item_request(sub, client, n, self._monitoring[names[n][0]], self.config)
                        for n in chunk]
            results = await sub.create_monitored_items(requests)
            for node_id, result in zip(chunk, results):
                if isinstance(result, ua.StatusCode):
                    # A missing node is a template/device mismatch: say so, and keep the good ones.
                    for name in names.pop(node_id):
                        self._refuse(name, f"server refused to monitor {node_id.to_string()} ({result.name})")
        summary = recorder.revisions().summary(self.device.id)
        if summary is not None:
            log.info("%s", summary)
        if not names:
            self._report_refusals()
            raise SourceError(f"{self.config.endpoint}: none of the signal nodes could be subscribed: "
                              + "; ".join(f"{n}: {w}" for n, w in sorted(self._refused.items())))

    async def _identity(self, client: Client, resolver: Resolver) -> IdentityEvidence:
        cfg = self.config
        app_uri, cert = "", client.security_policy.peer_certificate or b""
        try:
            for ep in await client.get_endpoints():
                app_uri = app_uri or (ep.Server.ApplicationUri or "")
                cert = cert or (ep.ServerCertificate or b"")
        except ua.UaStatusCodeError as err:
            log.info("device %s: GetEndpoints refused (%s); identity without it", self.device.id, err)
        details = await self._read_strings(client, {k: ua.NodeId(v) for k, v in _BUILD_INFO.items()})
        serial = ""
        if cfg.serial_node:
            found, failed = await resolver.resolve({"serial": parse_target(cfg.serial_node)})
            if "serial" in failed:
                log.info("device %s: serial_node %s: %s", self.device.id, cfg.serial_node, failed["serial"])
            else:
                serial = (await self._read_strings(client, found)).get("serial", "")
        extra = {"security": f"{cfg.security_policy}/{cfg.security_mode}"}
        if cfg.node_root is not None:
            # One aggregating server serves many machines: the root tells them apart.
            extra["node_root"] = cfg.node_root
        return IdentityEvidence(
            protocol="opcua", endpoint=cfg.endpoint, application_uri=app_uri,
            serial_number=serial,
            certificate_sha256=hashlib.sha256(_first_certificate(cert)).hexdigest() if cert else "",
            details={**{k: v for k, v in details.items() if v}, **extra})

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


async def _disconnect(client: Client, timeout_s: float, device_id: str) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except Exception:  # the link may already be dead; closing must not fail
        log.debug("device %s: disconnect failed", device_id, exc_info=True)


# What servers answer OpenSecureChannel with when they do not trust (or do not accept) our client
# certificate; node-opcua says BadSecurityChecksFailed for an untrusted one, as Part 4 advises
# servers to, so as not to tell an attacker which check failed.
_CLIENT_CERT_REFUSALS = frozenset({
    ua.StatusCodes.BadSecurityChecksFailed, ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateUriInvalid, ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateRevoked, ua.StatusCodes.BadCertificateRevocationUnknown,
    ua.StatusCodes.BadCertificateIssuerRevocationUnknown, ua.StatusCodes.BadCertificatePolicyCheckFailed,
})


def _client_cert_refused(endpoint: str, status: str, cert: str | None) -> str:
    where = f" ({cert})" if cert else ""
    return (f"{endpoint}: the server refused our client certificate{where}: {status}. Most servers "
            "refuse an unknown client certificate until it is trusted: `shangyun opcua cert -c "
            "<config>` prints it with its thumbprint; copy it into the server's trusted certificates "
            "(node-opcua, open62541: <server pki>/trusted/certs; KEPServerEX, Siemens, Prosys: their "
            "certificate manager, or move it from Rejected to Trusted) and the gateway connects on its "
            "next retry")


class _ChannelRefusal:
    """Keeps the server's answers to OpenSecureChannel during a connect.

    A server that refuses the channel answers with a ServiceFault; asyncua parses it as an
    OpenSecureChannelResponse, fails, and then trips an `assert` (the bare `AssertionError` users
    saw). The fault's status code is the server's reason, so it is read back from the kept
    answer instead.
    """

    def __init__(self, client: Client):
        self.client = client
        self.answers: list[asyncio.Future[Any]] = []
        self.refused: ua.UaStatusCodeError | None = None   # the server's refusal of the channel
        self._open = client.open_secure_channel

    async def open_secure_channel(self, *args: Any, **kwargs: Any) -> Any:
        protocol: Any = getattr(self.client.uaclient, "protocol", None)
        send = getattr(protocol, "_send_request", None)
        if send is None:  # another asyncua than the one pinned: its own error, unexplained
            return await self._open(*args, **kwargs)

        def keep(request: Any, timeout: float = 1, message_type: Any = ua.MessageType.SecureMessage) -> Any:
            answer = send(request, timeout, message_type)
            if message_type == ua.MessageType.SecureOpen:
                self.answers.append(answer)
            return answer

        protocol._send_request = keep
        try:
            return await self._open(*args, **kwargs)
        except ua.UaStatusCodeError as err:   # an ERR message: asyncua read the code itself
            self.refused = err
            raise
        except AssertionError:
            code = self.fault_code()
            if code is None:
                raise
            self.refused = ua.UaStatusCodeError(code)
            raise self.refused from None
        finally:
            protocol._send_request = send

    def fault_code(self) -> int | None:
        for answer in reversed(self.answers):
            if not answer.done() or answer.cancelled() or answer.exception() is not None:
                continue
            try:
                fault = struct_from_binary(ua.ServiceFault, answer.result())
            except Exception:  # not a fault either: keep asyncua's own error
                continue
            code = fault.ResponseHeader.ServiceResult.value
            if code:
                return int(code)
        return None


@contextmanager
def _channel_refusals_named(client: Client, refusal: _ChannelRefusal) -> Iterator[None]:
    """For the first connect only: asyncua's channel renewals keep its own method."""
    client.open_secure_channel = refusal.open_secure_channel  # type: ignore[method-assign]
    try:
        yield
    finally:
        del client.open_secure_channel


def _status_text(err: ua.UaStatusCodeError) -> str:
    code = getattr(err, "code", None)
    if code is None:
        return str(err)
    status = ua.StatusCode(code)
    return f"{status.name} ({status.doc})" if status.doc else status.name


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send theirs with its issuers)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    if der[1] < 0x80:
        return der[: 2 + der[1]]
    n = der[1] & 0x7F
    return der[: 2 + n + int.from_bytes(der[2:2 + n], "big")]
