"""`shangyun discover opcua` (gateway/cli.py mounts `add_parser`): what an OPC UA server offers.

1. GetEndpoints on an unsecured channel (every server must answer it): each endpoint's security
   policy, mode and user token types, so the engineer knows what to configure before trying.
2. A session (with the security the engineer gives) browses from Objects, breadth first, with a
   depth and a node limit: bounded on a KEPServerEX with 100,000 tags. Variables are read for
   data type, value rank, access level and their EngineeringUnits property.
3. Variables are grouped per machine-like object (one with an `Identification` or
   `MachineInformation` child, as OPC 40001/40501 and EUROMAP 83 machines have, else the
   variable's own parent object) and each group becomes a device whose signals carry suggested
   roles (connectors/opcua/roles.py): by companion-spec browse name, by unit, by name.

The device YAML uses full `nsu=` node ids (namespace indexes move between servers and rebuilds),
so `shangyun check` accepts it and `shangyun run` collects from it unchanged.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from asyncua import Client, ua
from pydantic import ValidationError

from connectors.naming import unique_name
from connectors.opcua.config import OpcUaConnection, parse_node_id
from connectors.opcua.roles import Suggestion, suggest_roles
from edge.errors import ConfigError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, SignalSpec

Progress = Callable[[int, int], None]   # (nodes browsed, node limit)

_BROWSE_CHUNK = 200       # nodes per Browse request; servers limit MaxNodesPerBrowse
_READ_CHUNK = 500         # attributes per Read request
_MARKERS = ("Identification", "MachineInformation")   # OPC 40001-1 / EUROMAP 83 machine objects
# Properties that describe a variable rather than being a reading of their own.
_METADATA = {"EngineeringUnits", "EURange", "InstrumentRange", "EnumStrings", "EnumValues",
             "ValuePrecision", "Definition", "NodeVersion", "ValueAsText", "TrueState", "FalseState",
             "MaxTimeInterval", "MinTimeInterval", "ExceptionDeviation", "ExceptionDeviationFormat"}
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_NON_ID = re.compile(r"[^A-Za-z0-9_.\-]+")
_NON_NAME = re.compile(r"[^A-Za-z0-9_]+")
_COLLECTABLE = {  # built-in scalar types the source turns into samples (ns=0 DataType ids)
    ua.ObjectIds.Boolean, ua.ObjectIds.SByte, ua.ObjectIds.Byte, ua.ObjectIds.Int16, ua.ObjectIds.UInt16,
    ua.ObjectIds.Int32, ua.ObjectIds.UInt32, ua.ObjectIds.Int64, ua.ObjectIds.UInt64, ua.ObjectIds.Float,
    ua.ObjectIds.Double, ua.ObjectIds.String, ua.ObjectIds.LocalizedText, ua.ObjectIds.DateTime,
    ua.ObjectIds.Number, ua.ObjectIds.Integer, ua.ObjectIds.UInteger, ua.ObjectIds.Enumeration,
    ua.ObjectIds.Duration, ua.ObjectIds.UtcTime}


@dataclass(frozen=True)
class EndpointInfo:
    url: str
    policy: str           # the policy URI's last part: None, Basic256Sha256, ...
    mode: str             # None, Sign, SignAndEncrypt
    user_tokens: tuple[str, ...]   # Anonymous, UserName, Certificate, IssuedToken


@dataclass
class VariableFound:
    node_id: str          # nsu=<uri>;s=... (i=... in namespace 0)
    path: tuple[str, ...]   # browse names from the machine object down to the variable
    browse_path: str = ""   # the same as a browse path relative to the machine ("" if not writable as one)
    data_type: str = ""
    access: str = ""      # r, w, rw or "" (not readable)
    unit: str = ""
    scalar: bool = True
    collectable: bool = False
    suggestion: Suggestion | None = None

    @property
    def name(self) -> str:
        return self.path[-1]


@dataclass
class MachineFound:
    node_id: str
    name: str
    path: tuple[str, ...]          # browse names from Objects down to the machine object
    browse_path: str = ""          # /Objects/nsu=...;Machine ("" if its names cannot be written as a path)
    variables: list[VariableFound] = field(default_factory=list)
    serial_node: str = ""
    serial_number: str = ""


@dataclass
class Discovery:
    endpoint: str
    endpoints: list[EndpointInfo]
    machines: list[MachineFound] = field(default_factory=list)
    nodes_browsed: int = 0
    truncated: str = ""            # why the browse stopped early ("" when it did not)
    identity: IdentityEvidence | None = None   # the server's, as the gateway will see it

    def table(self) -> str:
        rows = [f"endpoints of {self.endpoint}:"]
        for ep in self.endpoints:
            rows.append(f"  {ep.policy:24} {ep.mode:15} users: {', '.join(ep.user_tokens) or '-'}  {ep.url}")
        if self.identity is not None:
            d = self.identity.details
            rows.append(f"server: {self.identity.application_uri or '-'}  {d.get('manufacturer_name', '')} "
                        f"{d.get('product_name', '')} {d.get('software_version', '')}".rstrip())
            if self.identity.certificate_sha256:
                rows.append(f"  certificate SHA-256 {self.identity.certificate_sha256}")
        for m in self.machines:
            rows.append(f"machine {'/'.join(m.path)}  ({m.node_id})"
                        + (f"  serial {m.serial_number}" if m.serial_number else ""))
            for v in m.variables:
                role = f"-> {v.suggestion.role} ({v.suggestion.why})" if v.suggestion else ""
                if not v.collectable:
                    role = "(not collected: " + ("array" if not v.scalar else "not readable" if "r" not in v.access
                                                 else f"type {v.data_type}") + ")"
                rows.append(f"  {'.'.join(v.path):40} {v.data_type:14} {v.access or '-':3} {v.unit or '':6} {role}")
        rows.append(f"{self.nodes_browsed} nodes browsed" + (f"; stopped: {self.truncated}" if self.truncated else ""))
        return "\n".join(rows)


def _policy_name(uri: str) -> str:
    return uri.rsplit("#", 1)[-1] if uri else "None"


async def get_endpoints(url: str, timeout_s: float) -> list[EndpointInfo]:
    """The endpoints `url` offers, asked on an unsecured channel (no session needed)."""
    client = Client(url, timeout=timeout_s)
    try:
        await asyncio.wait_for(client.connect_socket(), timeout_s)
        try:
            await client.send_hello()
            await client.open_secure_channel()
            eps = await client.get_endpoints()
            await client.close_secure_channel()
        finally:
            client.disconnect_socket()
    except (OSError, asyncio.TimeoutError, ua.UaError) as err:
        raise SourceError(f"{url}: cannot ask for endpoints: {err or type(err).__name__}") from None
    return [EndpointInfo(ep.EndpointUrl, _policy_name(ep.SecurityPolicyUri), ep.SecurityMode.name.rstrip("_"),
                         tuple(ua.UserTokenType(t.TokenType).name for t in ep.UserIdentityTokens or ()))
            for ep in eps]


def _nsu(node_id: ua.NodeId | ua.ExpandedNodeId, namespaces: list[str]) -> str:
    """A node id in the portable form: `nsu=<uri>;s=...`, plain `i=...` in namespace 0."""
    t = node_id.NodeIdType
    if t in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        ident = f"i={node_id.Identifier}"
    elif t == ua.NodeIdType.String:
        ident = f"s={node_id.Identifier}"
    elif t == ua.NodeIdType.Guid:
        ident = f"g={node_id.Identifier}"
    else:
        ident = f"b={base64.b64encode(node_id.Identifier).decode()}"
    idx = node_id.NamespaceIndex
    if idx == 0:
        return ident
    uri = namespaces[idx] if idx < len(namespaces) else ""
    return f"nsu={uri};{ident}" if uri and ";" not in uri else f"ns={idx};{ident}"


@dataclass
class _Node:
    node_id: ua.NodeId
    browse_name: str
    display: str
    node_class: ua.NodeClass
    parent: "_Node | None"
    depth: int
    is_property: bool = False
    ns: int = 0                    # the browse name's namespace index
    children: list["_Node"] = field(default_factory=list)

    def path(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.qualified_path())

    def qualified_path(self) -> tuple[tuple[int, str], ...]:
        """(namespace index, browse name) from below Objects down to this node."""
        out, node = [], self
        while node is not None and node.parent is not None:
            out.append((node.ns, node.browse_name))
            node = node.parent
        return tuple(reversed(out))


async def _browse_all(client: Client, parents: list[_Node]) -> list[tuple[_Node, list[ua.ReferenceDescription]]]:
    """Children (objects and variables, hierarchical references) of every node in `parents`,
    following continuation points so a server's per-call reference limit loses nothing."""
    out: list[tuple[_Node, list[ua.ReferenceDescription]]] = []
    for i in range(0, len(parents), _BROWSE_CHUNK):
        chunk = parents[i:i + _BROWSE_CHUNK]
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 1000
        params.NodesToBrowse = [ua.BrowseDescription(
            NodeId=p.node_id, BrowseDirection=ua.BrowseDirection.Forward,
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences), IncludeSubtypes=True,
            NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable, ResultMask=ua.BrowseResultMask.All)
            for p in chunk]
        results = await client.uaclient.browse(params)
        for parent, result in zip(chunk, results):
            refs = list(result.References or [])
            cp = result.ContinuationPoint
            while cp:
                nxt = ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[cp])
                more = (await client.uaclient.browse_next(nxt))[0]
                refs.extend(more.References or [])
                cp = more.ContinuationPoint
            out.append((parent, refs))
    return out


async def _read(client: Client, pairs: list[tuple[ua.NodeId, ua.AttributeIds]]) -> list[ua.DataValue]:
    out: list[ua.DataValue] = []
    for i in range(0, len(pairs), _READ_CHUNK):
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=a) for n, a in pairs[i:i + _READ_CHUNK]]
        out.extend(await client.uaclient.read(params))
    return out


async def browse(client: Client, *, depth: int, max_nodes: int,
                 progress: Progress | None = None) -> tuple[list[_Node], int, str]:
    """(every object and variable under Objects, nodes browsed, why it stopped early or "")."""
    root = _Node(ua.NodeId(ua.ObjectIds.ObjectsFolder), "Objects", "Objects", ua.NodeClass.Object, None, 0)
    seen = {root.node_id}
    found: list[_Node] = []
    level, truncated = [root], ""
    while level:
        next_level: list[_Node] = []
        for parent, refs in await _browse_all(client, level):
            for ref in refs:
                nid = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                if nid in seen:
                    continue
                # The standard objects under Objects (Server, Aliases...) describe the server,
                # not a machine: namespace 0 there is skipped.
                if parent is root and nid.NamespaceIndex == 0:
                    continue
                # KEPServerEX's own folders and tags (_System, _Statistics, _AdvancedTags...)
                # describe the server's drivers, not the machines behind them.
                if ref.BrowseName.Name.startswith("_"):
                    continue
                if len(found) >= max_nodes:
                    truncated = f"--max-nodes {max_nodes} reached"
                    break
                seen.add(nid)
                node = _Node(nid, ref.BrowseName.Name, ref.DisplayName.Text or ref.BrowseName.Name,
                             ref.NodeClass, parent, parent.depth + 1, ref.ReferenceTypeId == _HAS_PROPERTY,
                             ref.BrowseName.NamespaceIndex)
                parent.children.append(node)
                found.append(node)
                next_level.append(node)
            if truncated:
                break
        if progress is not None:
            progress(len(found), max_nodes)
        if truncated:
            break
        if next_level and next_level[0].depth >= depth:
            if any(n.node_class == ua.NodeClass.Object for n in next_level):
                truncated = f"--depth {depth} reached"
            # Variables at the last level are still read; only their EngineeringUnits (one
            # level further) are fetched below, without counting towards the depth.
            break
        level = next_level
    return found, len(found), truncated


async def _describe(client: Client, variables: list[_Node], namespaces: list[str]) -> dict[ua.NodeId, VariableFound]:
    """Data type, value rank, access level and unit of each variable."""
    attrs = (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank, ua.AttributeIds.AccessLevel)
    values = await _read(client, [(v.node_id, a) for v in variables for a in attrs])
    types: dict[ua.NodeId, str] = {}
    type_of: dict[ua.NodeId, ua.NodeId] = {}
    out: dict[ua.NodeId, VariableFound] = {}
    for k, var in enumerate(variables):
        dt, rank, access = (values[k * 3 + j].Value for j in range(3))
        dt_id = dt.Value if dt is not None and isinstance(dt.Value, ua.NodeId) else None
        level = access.Value if access is not None and isinstance(access.Value, int) else 0
        found = VariableFound(_nsu(var.node_id, namespaces), var.path(),
                              access=("r" if level & 1 else "") + ("w" if level & 2 else ""),
                              scalar=(rank.Value if rank is not None and rank.Value is not None else -1) in (-1, -2, -3))
        if dt_id is not None:
            types.setdefault(dt_id, "")
            type_of[var.node_id] = dt_id
        out[var.node_id] = found
        found.data_type = dt_id.to_string() if dt_id is not None else "?"
        found.collectable = found.scalar and "r" in found.access and dt_id is not None and (
            dt_id.NamespaceIndex != 0 or dt_id.Identifier in _COLLECTABLE)
    # Data type names: namespace 0 from the standard table, others from the server.
    other = [t for t in types if t.NamespaceIndex != 0]
    for t in types:
        if t.NamespaceIndex == 0:
            types[t] = ua.ObjectIdNames.get(t.Identifier, t.to_string())
    if other:
        for t, dv in zip(other, await _read(client, [(t, ua.AttributeIds.BrowseName) for t in other])):
            name = dv.Value.Value.Name if dv.Value is not None and dv.Value.Value is not None else ""
            types[t] = name or t.to_string()
    for node_id, dt_id in type_of.items():
        found = out[node_id]
        found.data_type = types[dt_id]
        # A server-defined type is collected when it is an enumeration (an integer on the
        # wire); structures are not readings.
        if dt_id.NamespaceIndex != 0:
            found.collectable = found.collectable and "enum" in found.data_type.lower()
    await _units(client, variables, out)
    return out


async def _units(client: Client, variables: list[_Node], out: dict[ua.NodeId, VariableFound]) -> None:
    """Each variable's EngineeringUnits (EUInformation's display name, e.g. kW), browsed one level
    below the variable when the browse itself did not reach so far."""
    unbrowsed = [v for v in variables if not v.children]
    for var, refs in await _browse_all(client, unbrowsed) if unbrowsed else []:
        for ref in refs:
            if ref.BrowseName.Name == "EngineeringUnits":
                var.children.append(_Node(ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex,
                                                    ref.NodeId.NodeIdType), "EngineeringUnits", "",
                                          ua.NodeClass.Variable, var, var.depth + 1, True))
    eu_nodes = [(var, c) for var in variables for c in var.children if c.browse_name == "EngineeringUnits"]
    if not eu_nodes:
        return
    for (var, _), dv in zip(eu_nodes, await _read(client, [(c.node_id, ua.AttributeIds.Value) for _, c in eu_nodes])):
        info = dv.Value.Value if dv.Value is not None else None
        if isinstance(info, ua.EUInformation):
            out[var.node_id].unit = (info.DisplayName.Text if info.DisplayName else "") or _unece(info.UnitId)


def _unece(code: int | None) -> str:
    """UNECE Rec. 20 common code packed into EUInformation.UnitId (KWT=kW, KWH=kWh...)."""
    if not code or code < 0:
        return ""
    return {"KWT": "kW", "KWH": "kWh", "WTT": "W", "WHR": "Wh", "MWH": "MWh"}.get(
        bytes([(code >> 16) & 0xFF, (code >> 8) & 0xFF, code & 0xFF]).decode("ascii", "replace").strip("\0"), "")


def _machine_of(node: _Node) -> _Node | None:
    """The machine-like object a variable belongs to: the nearest ancestor with a companion
    spec's machine marker, else the nearest object above it."""
    parent = node.parent
    nearest: _Node | None = None
    while parent is not None and parent.parent is not None:
        if parent.node_class == ua.NodeClass.Object:
            if nearest is None:
                nearest = parent
            if any(c.browse_name in _MARKERS for c in parent.children):
                return parent
        parent = parent.parent
    return nearest


_UNWRITABLE_SEGMENT = re.compile(r"^(nsu=|\d+:)|/")


def _path_text(segments: tuple[tuple[int, str], ...], namespaces: list[str], *, absolute: bool) -> str:
    """Browse names as a browse path (connectors/opcua/paths.py): a name carries its namespace
    (by URI, which survives a server's re-indexing) where it differs from the one before; a
    relative path names its first namespace, an absolute one starts at /Objects. "" for names the
    syntax cannot carry (a '/', a leading `nsu=` or `2:`): such a signal keeps its node id."""
    out, prev = [], 0 if absolute else -1
    for ns, name in segments:
        if _UNWRITABLE_SEGMENT.search(name) or not name.strip():
            return ""
        if ns == prev:
            out.append(name)
        else:
            uri = namespaces[ns] if ns < len(namespaces) else ""
            out.append(f"nsu={uri};{name}" if ns and uri and ";" not in uri else f"{ns}:{name}")
        prev = ns
    return ("/Objects/" if absolute else "") + "/".join(out)


def group(nodes: list[_Node], described: dict[ua.NodeId, VariableFound], namespaces: list[str]) -> list[MachineFound]:
    machines: dict[ua.NodeId, MachineFound] = {}
    for node in nodes:
        if node.node_class != ua.NodeClass.Variable or node.node_id not in described:
            continue
        machine = _machine_of(node)
        if machine is None:
            continue
        m = machines.get(machine.node_id)
        if m is None:
            root_path = _path_text(machine.qualified_path(), namespaces, absolute=True)
            m = machines[machine.node_id] = MachineFound(_nsu(machine.node_id, namespaces), machine.display,
                                                         machine.path(), root_path)
        var = described[node.node_id]
        var.path = var.path[len(m.path):]
        var.browse_path = _path_text(node.qualified_path()[len(m.path):], namespaces, absolute=False)
        if var.name == "SerialNumber" and var.collectable and not m.serial_node:
            m.serial_node = var.node_id
        m.variables.append(var)
    for m in machines.values():
        suggest_roles(m.variables)
    return [m for m in machines.values() if m.variables]


# Every server has it (Server/ServerStatus/CurrentTime): the probe's one signal, never read.
_PROBE_NODE = "i=2258"


async def discover(url: str, conn: OpcUaConnection, *, depth: int = 6, max_nodes: int = 5000,
                   progress: Progress | None = None) -> Discovery:
    from connectors.opcua.source import OpcUaSource

    found = Discovery(url, await get_endpoints(url, conn.timeout_s))
    # The source's own connect, so discovery meets the server exactly as `shangyun run` will
    # (security, pinning, password, the server's refusal reasons) and captures the identity
    # evidence the gateway will compare at every connect. Polling mode: nothing is subscribed.
    probe = OpcUaSource(DeviceSpec(id="discover", name=url, protocol="opcua",
                                   connection={**conn.model_dump(), "mode": "poll"},
                                   signals=(SignalSpec("probe", address=_PROBE_NODE),)))
    try:
        found.identity = await probe.connect()
    except SourceError as err:
        raise SourceError(f"{err}; it offers: {_offers(found.endpoints)}") from None
    client = probe._client   # the source's session: asked to expose it (see the report)
    assert client is not None
    try:
        namespaces = await client.get_namespace_array()
        nodes, found.nodes_browsed, found.truncated = await browse(client, depth=depth, max_nodes=max_nodes,
                                                                   progress=progress)
        variables = [n for n in nodes if n.node_class == ua.NodeClass.Variable
                     and not (n.is_property and n.browse_name in _METADATA)]
        described = await _describe(client, variables, namespaces) if variables else {}
        found.machines = group(nodes, described, namespaces)
        await _read_serials(client, found.machines)
    finally:
        await probe.close()
    return found


async def _read_serials(client: Client, machines: list[MachineFound]) -> None:
    """Each machine's serial number as the source reads it (text), for its identity evidence."""
    with_serial = [m for m in machines if m.serial_node]
    if not with_serial:
        return
    namespaces = await client.get_namespace_array()
    ids = [ua.NodeId.from_string(_index_form(m.serial_node, namespaces)) for m in with_serial]
    for m, dv in zip(with_serial, await _read(client, [(n, ua.AttributeIds.Value) for n in ids])):
        value = dv.Value.Value if dv.Value is not None else None
        if value is not None:
            m.serial_number = str(getattr(value, "Text", value))


def _index_form(node_id: str, namespaces: list[str]) -> str:
    parsed = parse_node_id(node_id)
    if parsed.namespace_uri is None:
        return parsed.with_index(parsed.namespace_index or 0)
    return parsed.with_index(namespaces.index(parsed.namespace_uri))


def _offers(endpoints: list[EndpointInfo]) -> str:
    return "; ".join(f"{e.policy}/{e.mode} ({', '.join(e.user_tokens)})" for e in endpoints) or "no endpoints"


def _collected(m: MachineFound) -> list[VariableFound]:
    return [v for v in m.variables if v.collectable and v.name != "SerialNumber"]


def device_entries(found: Discovery, conn: OpcUaConnection) -> list[dict[str, Any]]:
    """One device per machine with at least one collectable variable, in the config's own form.

    Several machines behind one endpoint (an aggregating server) get a `node_root` each, the
    machine's folder as an absolute browse path, with signals as paths relative to it: the
    root tells the machines apart in their identity, and browse names survive a rebuilt
    project where numeric ids move. Their identity block is left out: the configured identity
    cannot carry the root, so the gateway would see every connect as a changed identity.
    """
    base = conn.model_dump(exclude_unset=True)
    aggregated = sum(1 for m in found.machines if _collected(m)) > 1
    entries, ids = [], set()
    for m in found.machines:
        signals, names = [], set()
        rooted = aggregated and bool(m.browse_path)
        for v in _collected(m):
            s = v.suggestion
            address = v.browse_path if rooted and v.browse_path else v.node_id
            sig: dict[str, Any] = {"name": unique_name(s.role if s else _signal_name(v.path), names, sep="_"),
                                   "address": address}
            if s is not None and s.scale != 1.0:
                sig["scale"] = s.scale
            if s is not None and s.states:
                sig["states"] = dict(s.states)
            signals.append(sig)
        if not signals:
            continue
        connection = {**base}
        if m.serial_node:
            connection["serial_node"] = m.serial_node
        if rooted:
            connection["node_root"] = m.browse_path
        dev_id = unique_name(_NON_ID.sub("-", m.name).strip("-._")[:60] or "machine", ids, sep="-")
        entry: dict[str, Any] = {"id": dev_id, "name": m.name, "type": "opcua", "connection": connection,
                                 "signals": signals}
        identity = {} if rooted else _identity_entry(found.identity, m)
        if identity:
            entry["identity"] = identity
        entries.append(entry)
    return entries


def _identity_entry(server: IdentityEvidence | None, m: MachineFound) -> dict[str, str]:
    """What was seen at discovery, for the gateway to compare at every connect (a change is an
    identity_changed event): the fields the source's own evidence fills, as it fills them."""
    out = {"application_uri": server.application_uri if server else "",
           "certificate_sha256": server.certificate_sha256 if server else "",
           "serial_number": m.serial_number}
    return {k: v for k, v in out.items() if v}


def _signal_name(path: tuple[str, ...]) -> str:
    name = ".".join(_NON_NAME.sub("_", p).strip("_") or "x" for p in path)[:80]
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


# --- the command ------------------------------------------------------------


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("opcua", help="list an OPC UA server's endpoints and variables; suggest devices")
    p.add_argument("endpoint", help="opc.tcp://HOST:PORT[/path]")
    p.add_argument("-o", "--output", default=None, help="write suggested device YAML here")
    p.add_argument("--depth", type=int, default=6, help="levels to browse below Objects (default 6)")
    p.add_argument("--max-nodes", type=int, default=5000, help="stop browsing after this many nodes (default 5000)")
    p.add_argument("--security", default="None", metavar="POLICY[/MODE]",
                   help="e.g. Basic256Sha256/SignAndEncrypt (default None; mode default SignAndEncrypt)")
    p.add_argument("--user", default=None, help="user name (with --password-env or --password-file)")
    p.add_argument("--password-env", default=None, help="environment variable holding the password")
    p.add_argument("--password-file", default=None)
    p.add_argument("--pki-dir", default=None, help="client certificate, pins, trust list (default ./opcua-pki)")
    p.add_argument("--application-uri", default=None)
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="per request (default 4)")
    p.set_defaults(func=run)


def connection_from_args(args: argparse.Namespace) -> OpcUaConnection:
    policy, _, mode = args.security.partition("/")
    conn: dict[str, Any] = {"endpoint": args.endpoint}
    if policy != "None":
        conn.update(security_policy=policy, security_mode=mode or "SignAndEncrypt")
    for key, value in (("username", args.user), ("password_env", args.password_env),
                       ("password_file", args.password_file), ("pki_dir", args.pki_dir),
                       ("application_uri", args.application_uri), ("timeout_s", args.timeout)):
        if value is not None:
            conn[key] = value
    try:
        return OpcUaConnection.model_validate(conn)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise ConfigError(f"discover {args.endpoint}: {where + ': ' if where else ''}{e['msg']}") from None


def _bar(done: int, total: int) -> None:
    width = 30
    filled = min(width, width * done // max(total, 1))
    print(f"\rbrowsing [{'#' * filled}{'.' * (width - filled)}] {done} nodes (limit {total})",
          end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    conn = connection_from_args(args)
    tty = sys.stderr.isatty()
    found = asyncio.run(discover(args.endpoint, conn, depth=args.depth, max_nodes=args.max_nodes,
                                 progress=_bar if tty else None))
    if tty:
        print(file=sys.stderr)
    print(found.table())
    if args.output:
        devices = device_entries(found, conn)
        Path(args.output).write_text(yaml.safe_dump({"devices": devices}, sort_keys=False, allow_unicode=True),
                                     encoding="utf-8")
        print(f"{len(devices)} suggested devices written to {args.output}", file=sys.stderr)
    return 0 if found.machines else 1
