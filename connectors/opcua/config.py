"""OPC UA settings and node addresses (validation only, no I/O)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from connectors.opcua.paths import BrowsePath, parse_browse_path

_NODE_ID = re.compile(r"^(?:(?P<ns>ns=\d+|nsu=[^;]+);)?(?P<kind>[isgb])=(?P<ident>.+)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ParsedNodeId:
    """A node id split into its parts; `namespace_uri` is set for `nsu=` ids and must be
    resolved against the server's namespace array (indexes differ between servers)."""

    namespace_index: int | None
    namespace_uri: str | None
    kind: str        # i numeric, s string, g guid, b opaque (base64)
    identifier: str

    def with_index(self, index: int) -> str:
        return f"ns={index};{self.kind}={self.identifier}"


def parse_node_id(text: str) -> ParsedNodeId:
    m = _NODE_ID.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a node id: expected ns=<index>;s=<name>, "
                         f"nsu=<namespace uri>;s=<name>, or i=/g=/b= identifiers")
    ns, kind, ident = m.group("ns"), m.group("kind"), m.group("ident")
    if kind == "i" and not ident.isdigit():
        raise ValueError(f"{text!r}: numeric identifier i= must be digits")
    if ns is None:
        return ParsedNodeId(0, None, kind, ident)
    if ns.startswith("nsu="):
        return ParsedNodeId(None, ns[4:], kind, ident)
    return ParsedNodeId(int(ns[3:]), None, kind, ident)


def looks_like_node_id(text: str) -> bool:
    return _NODE_ID.match(text.strip()) is not None


Target = ParsedNodeId | BrowsePath


def parse_target(text: str) -> Target:
    """A node id (`ns=`, `nsu=`, `i=`...) or a browse path. A bare word (`State`) is neither:
    as a path it would be a one-segment relative path, but far more often it is a node id
    missing its `ns=...;s=`, so it must be written as `{path: State}` to mean a path."""
    if looks_like_node_id(text):
        return parse_node_id(text)
    try:
        path = parse_browse_path(text)
    except ValueError as err:
        raise ValueError(f"{text!r} is not a node id (ns=<index>;s=<name>, nsu=<uri>;s=<name>, "
                         f"i=<number>) nor a browse path ({err})") from None
    qualified = any(seg.namespace_index is not None or seg.namespace_uri is not None for seg in path.segments)
    if not (path.absolute or len(path.segments) > 1 or qualified):
        raise ValueError(f"{text!r} is not a node id (ns=<index>;s=<name>, nsu=<uri>;s=<name>, "
                         f"i=<number>) nor a browse path (/Objects/2:Machine1/..., 2:{text} under a "
                         f"node_root, or {{path: {text}}})")
    return path


class Deadband(BaseModel):
    """A data-change filter: report a value only when it moved by more than `value` (absolute,
    in the variable's unit) or by `value` percent of its EURange (percent; the server needs one)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)

    @model_validator(mode="after")
    def _percent(self) -> "Deadband":
        if self.type == "percent" and self.value > 100:
            raise ValueError(f"a percent deadband is at most 100, got {self.value}")
        return self


class MonitoredNode(BaseModel):
    """A signal address with its own monitoring parameters (unset ones: the connection's).
    Exactly one of `node` (a node id) and `path` (a browse path); `index` picks one element of
    an array value (an array without it is refused: a sample holds one value)."""

    model_config = ConfigDict(extra="forbid")

    node: str | None = None
    path: str | None = None
    index: int | None = Field(default=None, ge=0)
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    queue_size: int | None = Field(default=None, ge=1)
    deadband: Deadband | None = None

    @field_validator("node")
    @classmethod
    def _valid_node(cls, v: str | None) -> str | None:
        if v is not None:
            parse_node_id(v)
            return v.strip()
        return v

    @field_validator("path")
    @classmethod
    def _valid_path(cls, v: str | None) -> str | None:
        if v is not None:
            parse_browse_path(v)
            return v.strip()
        return v

    @model_validator(mode="after")
    def _one_target(self) -> "MonitoredNode":
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of node (a node id) and path (a browse path)")
        return self

    @property
    def text(self) -> str:
        return self.node if self.node is not None else str(self.path)

    @property
    def target(self) -> Target:
        return parse_node_id(self.node) if self.node is not None else parse_browse_path(str(self.path))


class NodeAddress(RootModel[str | MonitoredNode]):
    """A signal's address: a node id string, `ns=2;s=Press.State` or
    `nsu=urn:shangyun:sim;s=Press.State`; a browse path, `/Objects/2:Press/2:State` or, under
    the connection's node_root, `2:State`; or a mapping with the node id (`node:`) or browse
    path (`path:`) and its monitoring parameters: `{node: "nsu=...;s=Press.PowerKw",
    sampling_interval_ms: 100, queue_size: 5, deadband: {type: absolute, value: 0.5}, index: 0}`."""

    @field_validator("root")
    @classmethod
    def _valid(cls, v: str | MonitoredNode) -> str | MonitoredNode:
        if isinstance(v, str):
            parse_target(v)
            return v.strip()
        return v

    @property
    def monitoring(self) -> MonitoredNode:
        if isinstance(self.root, MonitoredNode):
            return self.root
        if looks_like_node_id(self.root):
            return MonitoredNode(node=self.root)
        return MonitoredNode(path=self.root)

    @property
    def target(self) -> Target:
        return self.monitoring.target

    @property
    def parsed(self) -> ParsedNodeId:
        """The node id; ValueError for a browse path (it has none until resolved)."""
        target = self.target
        if isinstance(target, BrowsePath):
            raise ValueError(f"{target} is a browse path, resolved to a node id only at connect")
        return target


SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcUaConnection(BaseModel):
    # Relative paths in a gateway config (gateway/config.py resolves them): files the engineer
    # supplies are relative to the config file; the PKI directory, which the gateway writes (its
    # own certificate, pinned servers), lives in the data directory beside the store.
    file_fields: ClassVar[dict[str, str]] = {
        "pki_dir": "data", "certificate_path": "config", "private_key_path": "config",
        "trust_list_dir": "config", "server_certificate_path": "config",
        "user_certificate_path": "config", "user_private_key_path": "config",
        "password_file": "config"}
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    mode: Literal["subscribe", "poll"] = Field(
        default="subscribe", description="poll: the Read service every poll_interval_s, for servers "
                                         "whose subscriptions are unusable")
    poll_interval_s: float = Field(default=1.0, gt=0)
    publishing_interval_ms: float = Field(default=500, gt=0)
    sampling_interval_ms: float | None = Field(
        default=None, ge=0, description="default per monitored item; None: the publishing interval")
    queue_size: int = Field(default=10, ge=1, description="default per monitored item")
    timeout_s: float = Field(default=4.0, gt=0)
    watchdog_interval_s: float = Field(
        default=1.0, gt=0, description="how often the link is probed; a dead link is noticed within ~2x")
    security_policy: SecurityPolicy = "None"
    security_mode: SecurityMode = "None"
    application_uri: str | None = Field(
        default=None, description="the client's ApplicationUri, also the URI SAN of its certificate; "
                                  "default urn:<hostname>:shangyun")
    pki_dir: str = Field(default="opcua-pki", description="own certificate, pins, trust list, rejected")
    certificate_path: str | None = Field(default=None, description="own certificate (DER/PEM); default: "
                                                                   "made on first run in pki_dir/own")
    private_key_path: str | None = None
    server_trust: Literal["tofu", "trust_list"] = Field(
        default="tofu", description="tofu: pin the first certificate seen per endpoint; trust_list: "
                                    "only certificates in trust_list_dir")
    trust_list_dir: str | None = Field(default=None, description="default pki_dir/trusted")
    server_certificate_path: str | None = None
    username: str | None = None
    user_certificate_path: str | None = Field(
        default=None, description="X.509 user identity: the user's certificate (DER/PEM)")
    user_private_key_path: str | None = Field(default=None, description="the user certificate's key (PEM)")
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    password_file: str | None = Field(default=None, description="file holding the password")
    serial_node: str | None = Field(default=None, description="node id or browse path of a serial number")
    node_root: str | None = Field(
        default=None, description="a node id or absolute browse path of this machine's folder on an "
                                  "aggregating server; relative signal paths start there")
    datetime_values: Literal["epoch_ns", "text"] = Field(
        default="epoch_ns", description="DateTime values: UTC nanoseconds (a time) or ISO 8601 text")
    max_items_per_call: int = Field(
        default=500, ge=1, description="monitored items per CreateMonitoredItems call (server limit)")

    @field_validator("serial_node")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is not None:
            parse_target(v)
            return v.strip()
        return v

    @field_validator("node_root")
    @classmethod
    def _root(cls, v: str | None) -> str | None:
        if v is None:
            return v
        target = parse_target(v)
        if isinstance(target, BrowsePath) and not target.absolute:
            raise ValueError(f"node_root {v!r}: a browse path here starts at the Root folder: /Objects/...")
        return v.strip()

    @model_validator(mode="after")
    def _security(self) -> "OpcUaConnection":
        secure = self.security_policy != "None"
        if secure != (self.security_mode != "None"):
            raise ValueError("security_policy and security_mode must both be None or both be set")
        if (self.certificate_path is None) != (self.private_key_path is None):
            raise ValueError("certificate_path and private_key_path go together")
        sources = [n for n in ("password", "password_env", "password_file") if getattr(self, n) is not None]
        if len(sources) > 1:
            raise ValueError(f"give the password one way, not {' and '.join(sources)}")
        if (self.user_certificate_path is None) != (self.user_private_key_path is None):
            raise ValueError("user_certificate_path and user_private_key_path go together")
        if self.user_certificate_path is not None and self.username is not None:
            raise ValueError("one user identity: username or user_certificate_path, not both")
        if (self.username is None) != (not sources):
            raise ValueError("username needs a password (password, password_env or password_file) and "
                             "a password needs a username")
        return self
