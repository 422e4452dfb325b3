"""The gateway's YAML configuration: models, loading, and conversion to edge DeviceSpecs.

A config file has up to four sections:

    gateway:                 # all optional, defaults shown in GatewaySettings
      store: {path: shangyun.db, retention_days: 30}
      calendar: shifts.yaml  # the plant's shift calendar (gateway/calendar.py); default 24/7
      outbox: {max_samples: 100000000}   # store-and-forward bound (docs/influxdb.md)
      evidence: {checkpoint_s: 300, seal_after_s: 900, backfill_after_s: 3600, witness: null}
    sinks:                   # optional: the central side, fed from the outbox (edge/sinks/)
      - {type: influxdb, url: "http://influx:8086", org: factory, bucket: shangyun, token: "${INFLUX_TOKEN}"}
      - {type: mqtt, broker: "mqtts://central:8883", topic: "shangyun/{site}/{device}"}
    mqtt_brokers:            # optional: MQTT connections shared by the devices naming them (docs/mqtt.md)
      - {name: plant, host: broker.plant.local, ca_file: plant-ca.pem}
    devices:
      - id: press-01         # letters, digits, '-', '_', '.'
        type: modbus         # a connector name: see `shangyun run --help` / connectors.registry
        profile: eastron-sdm630  # optional: a profile the connector ships or a gateway/templates/
                                 # one, supplying signals; the block's `signals` override/extend it
        connection: {...}    # validated by the connector's own model
        signals: [...]       # name (a role or any name), address, scale, offset, states
      - ids: "m{01..50}"     # MQTT: one block, one device per id, on a topic template
        type: mqtt
        connection: {broker: plant, topic: "factory/{line}/{device}/telemetry"}

Validation happens in two passes: the common shape here, then each device's `connection` and
signal `address` against its connector's models, so every error carries the file and line.
Files are read as UTF-8, UTF-16 with a BOM or GB18030 (gateway/yamlconfig.py); relative paths
in the file are relative to it. What needs the machine (the store's directory, host names, MQTT
topic filters) is checked by `shangyun check` (gateway/check.py).
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError,
                      field_validator, model_validator)

from connectors import registry
from connectors.base import Connector, DeviceProfile
from connectors.mqtt.config import MqttBroker, MqttConnection, with_broker
from edge import sinks
from edge.errors import ConfigError
from edge.model import DeviceSpec, IdentityEvidence, SignalSpec, State
from edge.sinks import OutboxConfig, SinkConfig

from .feeds import Feed, check_feeds
from .yamlconfig import LocatedYaml, format_loc, load_yaml, validate

if TYPE_CHECKING:
    from verifier.oee import OeeConfig

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ID_RULE = "device ids are 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
_ID_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Strict):
    path: str = "shangyun.db"
    retention_days: PositiveInt = 30


class WitnessSettings(_Strict):
    """A witness (`shangyun witness serve`) that receipts each checkpoint (docs/evidence.md)."""
    url: str = Field(min_length=1)
    # The witness's public key (PEM, from `shangyun witness key`): receipts signed by any other
    # key are refused. Without it the first key seen is used, which proves less.
    key_file: str | None = None


class EvidenceSettings(_Strict):
    """The evidence ledger's schedule (gateway/evidence.py, docs/evidence.md)."""
    checkpoint_s: PositiveFloat = 300.0
    # A rollup day is sealed once it ended this long ago and the roll-up has passed it.
    seal_after_s: float = Field(900.0, ge=0)
    # Samples whose source time is this much older than their capture count as backfilled.
    backfill_after_s: float = Field(3600.0, ge=0)
    witness: WitnessSettings | None = None


class GatewaySettings(_Strict):
    name: str = "gateway"
    store: StoreSettings = StoreSettings()
    queue_size: PositiveInt = 10_000
    batch_size: PositiveInt = 500
    flush_interval_s: PositiveFloat = 0.5
    rollup_interval_s: PositiveFloat = 30.0
    # Minutes are rolled up only once this old, so samples still in flight land first.
    rollup_lag_s: float = Field(90.0, ge=0)
    prune_interval_s: PositiveFloat = 3600.0
    # Shift calendar for the dashboard's OEE (gateway/calendar.py); none: 24/7, as the verifier.
    calendar: str | None = None
    # Bound of the store-and-forward outbox (edge.outbox): raw samples waiting for the slowest sink.
    outbox: OutboxConfig = OutboxConfig()
    evidence: EvidenceSettings = EvidenceSettings()


class SignalConfig(_Strict):
    name: str
    address: Any = None
    scale: float = 1.0
    offset: float = 0.0
    states: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", v):
            raise ValueError("signal names are identifiers: letters, digits, '_' and '.'")
        return v

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for code, state in v.items():
            out[str(code)] = State.parse(state).value
        return out


class IdentityConfig(_Strict):
    """Identity captured at onboarding; a device presenting another one raises an event."""

    application_uri: str = ""
    serial_number: str = ""
    certificate_sha256: str = ""
    client_id: str = ""
    # OPC UA aggregating servers: the machine's node root on the shared server, part of its
    # fingerprint (edge.model.IdentityEvidence.fingerprint), so it must be part of what we expect.
    node_root: str = ""


class FeedConfig(_Strict):
    """A meter feeding a machine's signals (gateway/feeds.py): {meter signal: machine signal}."""

    device: str
    signals: dict[str, str] = Field(min_length=1)

    @field_validator("signals")
    @classmethod
    def _signal_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            SignalConfig._name(name)
        return v


class DeviceConfig(_Strict):
    id: str = ""
    # MQTT topic templates: one block for many devices on a shared connection (docs/mqtt.md).
    ids: list[str] | str | None = None
    type: str
    name: str = ""
    profile: str = ""
    line: str = ""
    location: str = ""
    ideal_cycle_s: PositiveFloat | None = None
    enabled: bool = True
    connection: dict[str, Any]
    signals: list[SignalConfig] = Field(default_factory=list)
    vars: dict[str, str] = Field(default_factory=dict)
    identity: IdentityConfig | None = None
    feeds: list[FeedConfig] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v and not _ID.match(v):
            raise ValueError(_ID_RULE)
        return v

    @model_validator(mode="after")
    def _one_id(self) -> "DeviceConfig":
        if bool(self.id) == (self.ids is not None):
            raise ValueError("give `id:` (one device) or `ids:` (an MQTT topic template block), not "
                             + ("both" if self.id else "neither"))
        return self

    @field_validator("feeds", mode="before")
    @classmethod
    def _one_feed(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v   # a meter feeding one machine: no list needed


class GatewayConfig(_Strict):
    gateway: GatewaySettings = GatewaySettings()
    devices: list[DeviceConfig] = []
    # Shared MQTT connections (connectors.mqtt.config.MqttBroker), named by devices' `broker:`.
    mqtt_brokers: list[Any] = []
    # Upstream sinks (edge.sinks): validated by their own models in load_config, which names
    # the line of the entry that is wrong.
    sinks: list[Any] = []


class LoadedConfig:
    """A validated config: settings, device specs, and where it came from.

    `lines` keeps the line of every `gateway:` entry and of each device's own keys and
    connection keys (not the whole file's table, which is large for a big plant), so later
    checks can still name the line.
    """

    def __init__(self, path: str, settings: GatewaySettings, devices: list[DeviceSpec],
                 lines: dict[tuple, int] | None = None):
        self.path = path
        self.settings = settings
        self.devices = devices
        self.devices_by_id = {d.id: d for d in devices}
        self.lines = lines or {}
        self.oee: OeeConfig | None = None   # from `gateway.calendar`; None: 24/7
        self.sinks: list[SinkConfig] = []   # from `sinks:`, validated
        self.feeds: list[Feed] = []         # meters feeding machines' signals (gateway/feeds.py)

    def line_of(self, *loc: Any) -> int | None:
        """Line of a `gateway:` entry, e.g. line_of("gateway", "store", "path"), or of the
        nearest enclosing key given."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def line_of_device(self, device_id: str, *keys: Any) -> int | None:
        return self.line_of("device", device_id, *keys)

    @property
    def store_path(self) -> str:
        return self.relative_path(self.settings.store.path)

    @property
    def calendar_path(self) -> str | None:
        return self.relative_path(self.settings.calendar) if self.settings.calendar else None

    def relative_path(self, path: str) -> str:
        """`path` as written in the config: relative paths are relative to the config file."""
        p = Path(path)
        if not p.is_absolute():
            p = Path(self.path).resolve().parent / p
        return str(p)


def load_config(path: str | Path, text: str | None = None) -> LoadedConfig:
    """Load and fully validate a gateway config; raises ConfigError naming file and line."""
    doc = load_yaml(path, text)
    if doc.data is None or doc.data == {}:
        raise ConfigError("the file is empty; it needs at least a `devices:` list", path=doc.path)
    if not isinstance(doc.data, dict):
        raise ConfigError("the top level must be a mapping with `gateway:` and `devices:`",
                          path=doc.path, line=1)
    cfg: GatewayConfig = validate(doc, GatewayConfig)
    seen: dict[str, int] = {}
    specs = []
    feeds: list[Feed] = []
    feed_lines: dict[str, int | None] = {}
    lines = {loc: line for loc, line in doc.lines.items() if loc[:1] == ("gateway",)}
    brokers = _mqtt_brokers(doc, cfg.mqtt_brokers)
    dirs = _file_dirs(doc, cfg)
    blocks = [(("devices", i), one) for i, dev in enumerate(cfg.devices) for one in _expand_ids(doc, dev, ("devices", i))]
    for loc, dev in blocks:
        i = loc[1]
        keys = [("id",), ("type",), ("connection",), *(("connection", k) for k in dev.connection)]
        for key in keys:
            line = doc.line_of(loc + key)
            if line is not None:
                lines[("device", dev.id, *key)] = line
        lines[("device", dev.id)] = doc.line_of(loc) or 0
        if dev.id in seen:
            raise ConfigError(f"devices[{i}].id: duplicate device id {dev.id!r} "
                              f"(first defined at line {seen[dev.id]})",
                              path=doc.path, line=doc.line_of(loc + ("id",)))
        seen[dev.id] = doc.line_of(loc + ("id",)) or 0
        if dev.enabled:
            specs.append(_device_spec(doc, dev, loc, brokers, dirs))
            feeds.extend(Feed(dev.id, f.device, dict(f.signals)) for f in dev.feeds)
            feed_lines[dev.id] = doc.line_of(loc + ("feeds",))
    loaded = LoadedConfig(doc.path, cfg.gateway, specs, lines)
    check_feeds(feeds, loaded.devices_by_id, lambda meter: (doc.path, feed_lines.get(meter)))
    loaded.feeds = feeds
    loaded.sinks = _sinks(doc, cfg.sinks)
    if loaded.calendar_path:
        from .calendar import load_calendar  # imports the verifier's OEE: only when needed

        if not Path(loaded.calendar_path).is_file():
            raise ConfigError(f"gateway.calendar: no calendar file at {loaded.calendar_path} "
                              "(relative paths are relative to this file)", path=doc.path,
                              line=doc.line_of(("gateway", "calendar")))

        loaded.oee = load_calendar(loaded.calendar_path)
    return loaded


def _sinks(doc: LocatedYaml, blocks: list[Any]) -> list[SinkConfig]:
    out: list[SinkConfig] = []
    names: dict[str, int] = {}
    for i, block in enumerate(blocks):
        line = doc.line_of(("sinks", i))
        try:
            cfg = sinks.parse(block)
        except ConfigError as exc:
            raise ConfigError(f"sinks[{i}]: {exc.detail}", path=doc.path, line=line) from None
        if cfg.sink_name in names:
            raise ConfigError(f"sinks[{i}]: a second sink named {cfg.sink_name!r} (first at line "
                              f"{names[cfg.sink_name]}); give one a `name:` (each has its own "
                              "outbox cursor)", path=doc.path, line=line)
        names[cfg.sink_name] = line or 0
        out.append(cfg)
    return out


# --- MQTT: shared broker connections and topic-template blocks (docs/mqtt.md) -----------------

def _mqtt_brokers(doc: LocatedYaml, blocks: list[Any]) -> dict[str, MqttBroker]:
    out: dict[str, MqttBroker] = {}
    for i, block in enumerate(blocks):
        loc = ("mqtt_brokers", i)
        broker = validate(doc, MqttBroker, block, loc)
        try:
            MqttConnection.model_validate({"topic": "#", **broker.connection_keys()})
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"mqtt_brokers[{i}] ({broker.name}): {exc}", path=doc.path,
                              line=doc.line_of(loc)) from None
        if broker.name in out:
            raise ConfigError(f"mqtt_brokers[{i}]: a second broker named {broker.name!r}",
                              path=doc.path, line=doc.line_of(loc))
        out[broker.name] = broker
    return out


def _expand_ids(doc: LocatedYaml, dev: DeviceConfig, loc: tuple) -> list[DeviceConfig]:
    """A block with `ids:` is one device per id, all on its topic template: `ids: [m01, m02]`
    or `ids: "m{01..50}"` (a range keeps the width of its first number)."""
    if dev.ids is None:
        return [dev]
    where = {"path": doc.path, "line": doc.line_of(loc + ("ids",))}
    if dev.type != "mqtt" or "{device}" not in str(dev.connection.get("topic", "")):
        raise ConfigError(f"{format_loc(loc + ('ids',))}: `ids:` is for MQTT devices whose topic "
                          "has a {device} level (e.g. factory/{line}/{device}/telemetry)", **where)
    ids: list[str] = []
    for entry in [dev.ids] if isinstance(dev.ids, str) else dev.ids:
        m = _ID_RANGE.search(entry)
        if m is None:
            ids.append(entry)
            continue
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo or hi - lo >= 10_000:
            raise ConfigError(f"{format_loc(loc + ('ids',))}: range {m.group(0)} must count up, "
                              "at most 10000 ids", **where)
        ids += [entry[:m.start()] + str(n).zfill(len(m.group(1))) + entry[m.end():] for n in range(lo, hi + 1)]
    bad = [x for x in ids if not _ID.match(x)]
    if bad or not ids:
        raise ConfigError(f"{format_loc(loc + ('ids',))}: {bad[0] if bad else 'no ids'}: {_ID_RULE}", **where)
    return [dev.model_copy(update={"id": x, "ids": None}) for x in ids]


def _file_dirs(doc: LocatedYaml, cfg: "GatewayConfig") -> tuple[Path, Path]:
    """(the config file's directory, the data directory: the store's)."""
    base = Path(doc.path).resolve().parent
    store = Path(cfg.gateway.store.path)
    return base, Path(os.path.normpath(store if store.is_absolute() else base / store)).parent


def _resolve_files(connection: BaseModel, dirs: tuple[Path, Path] | None) -> BaseModel:
    """A connection block's relative file paths made absolute, as its model's `file_fields`
    says: relative to the config file ("config") or to the data directory ("data"). Relative
    to the working directory, they meant something else under systemd than at a shell."""
    fields: dict[str, str] = getattr(type(connection), "file_fields", {})
    if dirs is None or not fields:
        return connection
    updates = {name: str(dirs[0 if base == "config" else 1] / value)
               for name, base in fields.items()
               if isinstance(value := getattr(connection, name, None), str) and value
               and not Path(value).is_absolute()}
    return connection.model_copy(update=updates) if updates else connection


def _device_spec(doc: LocatedYaml, dev: DeviceConfig, loc: tuple,
                 brokers: dict[str, MqttBroker] | None = None,
                 dirs: tuple[Path, Path] | None = None) -> DeviceSpec:
    try:
        connector = registry.get(dev.type)
    except ConfigError:
        valid = ", ".join(registry.names())
        raise ConfigError(f"{format_loc(loc + ('type',))}: unknown connector type {dev.type!r}; "
                          f"valid: {valid}", path=doc.path, line=doc.line_of(loc + ("type",))) from None
    profile = _profile(doc, dev, connector, loc)
    raw_connection = {**profile.connection, **dev.connection} if profile else dev.connection
    if dev.type == "mqtt":
        try:
            raw_connection = with_broker(dev.connection, brokers or {})
        except ValueError as exc:
            raise ConfigError(f"{format_loc(loc + ('connection',))}: {exc}", path=doc.path,
                              line=doc.line_of(loc + ("connection", "broker"))) from None
    connection = validate(doc, connector.connection_model, raw_connection, loc + ("connection",))
    connection = _resolve_files(connection, dirs)
    names = [s.name for s in dev.signals]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{format_loc(loc + ('signals',))}: duplicate signal names {dupes}",
                          path=doc.path, line=doc.line_of(loc + ("signals",)))
    signals = _merged_signals(doc, dev, loc, profile)
    if not signals:
        raise ConfigError(f"{format_loc(loc)}: device {dev.id!r} has no signals; give `signals:` "
                          "or a `profile:`", path=doc.path, line=doc.line_of(loc))
    specs = []
    for sig, sig_loc in signals:
        address = sig.address
        if connector.address_model is not None:
            address = validate(doc, connector.address_model, sig.address, sig_loc)
        specs.append(SignalSpec(name=sig.name, address=address, scale=sig.scale,
                                offset=sig.offset, states=dict(sig.states)))
    expected = None
    if dev.identity is not None:
        ident = dev.identity.model_dump()
        # Defaults to the connection's own node_root: the identity a rooted device will show.
        root = ident.pop("node_root") or getattr(connection, "node_root", None) or ""
        expected = IdentityEvidence(protocol=dev.type, **ident,
                                    details={"node_root": root} if root else {})
    return DeviceSpec(
        id=dev.id, name=dev.name or dev.id, protocol=dev.type,
        connection=connection.model_dump(), signals=tuple(specs), profile=dev.profile,
        line=dev.line, location=dev.location, ideal_cycle_s=dev.ideal_cycle_s,
        expected_identity=expected,
    )


def _profile(doc: LocatedYaml, dev: DeviceConfig, connector: Connector, loc: tuple) -> DeviceProfile | None:
    """The device's `profile:`: one its connector ships (a meter's register map), else a
    gateway template (with `{var}` placeholders filled from the device)."""
    if not dev.profile:
        return None
    where = {"path": doc.path, "line": doc.line_of(loc + ("profile",))}
    try:
        shipped = connector.profile(dev.profile)
    except ConfigError as exc:  # a broken profile file names itself
        raise ConfigError(f"{format_loc(loc + ('profile',))}: {exc.detail}", **where) from None
    if shipped is not None:
        return shipped
    if dev.profile in template_names():
        variables = {"id": dev.id, "machine": dev.id, **dev.vars}
        signals = template_signals(dev.profile, variables, where=(doc.path, where["line"]))
        return DeviceProfile(dev.profile, tuple(s.model_dump() for s in signals),
                             source=f"gateway/templates/{dev.profile}.yaml")
    valid = [*connector.profile_names(), *template_names()]
    raise ConfigError(f"{format_loc(loc + ('profile',))}: unknown profile {dev.profile!r} for a "
                      f"{dev.type} device; valid: {', '.join(valid)}", **where)


def _merged_signals(doc: LocatedYaml, dev: DeviceConfig, loc: tuple,
                    profile: DeviceProfile | None) -> list[tuple[SignalConfig, tuple]]:
    """The profile's signals, each replaced by the block's signal of the same name, then the
    block's other signals; with the location an address error names."""
    own = {s.name: (s, loc + ("signals", j, "address")) for j, s in enumerate(dev.signals)}
    out: list[tuple[SignalConfig, tuple]] = []
    for raw in profile.signals if profile else ():
        try:
            sig = SignalConfig.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            raise ConfigError(f"{format_loc(loc + ('profile',))}: {profile.source if profile else ''}: "
                              f"signal {raw.get('name')!r}: {first['msg']}", path=doc.path,
                              line=doc.line_of(loc + ("profile",))) from None
        out.append(own.pop(sig.name, (sig, loc + ("profile",))))
    return out + list(own.values())


def template_names() -> list[str]:
    root = resources.files("gateway") / "templates"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def template_signals(profile: str, variables: dict[str, str],
                     where: tuple[str, int | None] = ("", None)) -> list[SignalConfig]:
    """Signals of a device template, with `{var}` placeholders filled from the device."""
    path = resources.files("gateway") / "templates" / f"{profile}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(template_names())}",
                          path=where[0], line=where[1])
    text = path.read_text(encoding="utf-8")
    for key, value in variables.items():
        text = text.replace("{" + key + "}", value)
    tdoc = load_yaml(f"gateway/templates/{profile}.yaml", text)
    return [validate(tdoc, SignalConfig, s, ("signals", i))
            for i, s in enumerate((tdoc.data or {}).get("signals", []))]
