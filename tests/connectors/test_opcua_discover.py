"""`shangyun discover opcua` against real servers: the simulator's machines, node-opcua (a stack
this project did not write), a server laid out like OPC 40501 / EUROMAP 77 machines, and a
secured server. The YAML written is loaded back as the gateway's config, passes `shangyun
check`, and a gateway run from it stores samples for every suggested signal."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import yaml
from asyncua import Server, ua

from connectors.opcua.discover import Discovery, VariableFound, connection_from_args, discover
from connectors.opcua.roles import suggest_roles
from edge.errors import ConfigError, SourceError
from gateway.cli import build_parser, main
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.factory import Factory
from simulator.machine import make_specs
from tests.connectors.opcua_servers import NodeOpcUaServer, SecureOpcUaTestServer
from tests.connectors.servers import NS_URI, free_port

pytestmark = pytest.mark.integration
COMPANION_NS = "urn:test:companion"
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def _leave_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() configures process-wide logging: not this test's subject.
    monkeypatch.setattr("gateway.cli._setup_logging", lambda level: None)


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def wait_for(predicate: Any, what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def signals_of(path: Path) -> dict[str, dict[str, str]]:
    return {d["id"]: {s["name"]: s["address"] for s in d["signals"]}
            for d in yaml.safe_load(path.read_text(encoding="utf-8"))["devices"]}


async def run_gateway_until_every_signal_stored(config_path: Path, *, during: Any = None,
                                                then: Any = None) -> None:
    """The gateway from `config_path` until every configured signal of every device has a
    sample; `await then(store)` checks the store before the gateway stops."""
    config = load_config(config_path)
    expected = {(d.id, s.name) for d in config.devices for s in d.signals}
    gw = Gateway(config)
    await gw.start()
    try:
        if during is not None:
            await during()

        def stored() -> bool:
            return all(gw.store.sample_count(device_id=d) > 0 and sig in gw.store.signals(d) for d, sig in expected)

        await wait_for(stored, f"samples of {sorted(expected)}")
        if then is not None:
            await then(gw.store)
    finally:
        await gw.stop()


# --- the simulator ----------------------------------------------------------


async def test_simulator_machines_discovered_and_collected_by_the_gateway(tmp_path: Path, capsys) -> None:
    specs = [s for s in make_specs(4) if s.protocol == "opcua"]
    assert len(specs) == 2
    factory = Factory(specs, broker=None, tick_s=0.2)
    await factory.start()
    try:
        devices = []
        for entry in factory.manifest()["machines"]:
            out = tmp_path / f"{entry['id']}.yaml"
            assert await run_cli("discover", "opcua", entry["endpoint"], "-o", str(out)) == 0
            table = capsys.readouterr().out
            assert "None" in table and "Anonymous" in table          # the endpoint and its security
            assert "PowerKw" in table and "Double" in table and "-> power_kw" in table
            (device,) = yaml.safe_load(out.read_text(encoding="utf-8"))["devices"]
            sim = f"nsu=urn:shangyun:sim;s={entry['id']}"
            assert device["id"] == entry["id"]
            assert device["connection"]["serial_node"] == f"{sim}.SerialNumber"
            assert device["identity"]["serial_number"] == entry["serial"]       # onboarding evidence
            assert device["identity"]["application_uri"] == f"urn:shangyun:sim:{entry['serial']}"
            assert f"server: urn:shangyun:sim:{entry['serial']}" in table
            assert {s["name"]: s["address"] for s in device["signals"]} == {
                "state": f"{sim}.State", "count_total": f"{sim}.CountTotal", "count_good": f"{sim}.CountGood",
                "count_reject": f"{sim}.CountReject", "power_kw": f"{sim}.PowerKw",
                "energy_kwh": f"{sim}.EnergyKwh", "reason_code": f"{sim}.ReasonCode", "alarm": f"{sim}.Alarm"}
            devices.append(device)
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"gateway": {"store": {"path": "gw.db"}}, "devices": devices}),
                          encoding="utf-8")
        assert await run_cli("check", "-c", str(config), "--no-resolve") == 0

        async def identities(store: Any) -> None:
            for entry in factory.manifest()["machines"]:
                record = store.device(entry["id"])
                assert record is not None and record.identity is not None
                assert record.identity.serial_number == entry["serial"]   # serial_node was right
            # The identity written at discovery is the one the gateway sees: no change reported.
            assert store.events(kind="identity_changed") == []

        await run_gateway_until_every_signal_stored(config, then=identities)
    finally:
        await factory.stop()


# --- node-opcua -------------------------------------------------------------


@pytest.fixture
async def node_server(tmp_path: Path) -> AsyncIterator[NodeOpcUaServer]:
    why = NodeOpcUaServer.available()
    assert not why, why   # make test-packages installs node-opcua: missing is a broken set-up
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki")
    await server.start()
    yield server
    await server.stop()


async def test_node_opcua_discovered_and_collected_by_the_gateway(node_server, tmp_path: Path) -> None:
    out = tmp_path / "devices.yaml"
    assert await run_cli("discover", "opcua", node_server.endpoint, "-o", str(out)) == 0
    m1 = f"nsu={NS_URI};s=m1"
    assert signals_of(out) == {"m1": {"state": f"{m1}.State", "power_kw": f"{m1}.PowerKw", "alarm": f"{m1}.Alarm",
                                      "Level": f"{m1}.Level"}}
    (written,) = yaml.safe_load(out.read_text(encoding="utf-8"))["devices"]
    assert written["identity"]["serial_number"] == "SN-NODE-1"
    assert written["identity"]["application_uri"] == "urn:shangyun:test:node-opcua"
    assert len(written["identity"]["certificate_sha256"]) == 64   # node-opcua sends its certificate
    assert await run_cli("check", "-c", str(out), "--no-resolve") == 0

    async def change() -> None:
        await node_server.write("PowerKw", 7.25)

    async def collected(store: Any) -> None:
        await wait_for(lambda: any(s.value == 7.25 for s in store.samples("m1", "power_kw")), "the new power")
        record = store.device("m1")
        assert record is not None and record.identity is not None and record.identity.serial_number == "SN-NODE-1"
        assert store.events(kind="identity_changed") == []

    await run_gateway_until_every_signal_stored(out, during=change, then=collected)


# --- companion specifications, units, limits ----------------------------------


class CompanionServer:
    """An asyncua server laid out like an OPC 40501 machine tool (Machines/<mt> with
    Identification, Monitoring, Production/Statistics) and a EUROMAP 77 injection moulding
    machine (MachineInformation, ActiveJobValues properties), with units, an array, a
    percentage called Power, a deep chain and a bulk folder for the limits."""

    def __init__(self, port: int):
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/companion"
        self.server: Server | None = None

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(COMPANION_NS)
        var = _Adder(ns)
        machines = await server.nodes.objects.add_folder(ua.NodeId("Machines", ns), ua.QualifiedName("Machines", ns))
        mt = await machines.add_object(ua.NodeId("MT", ns), ua.QualifiedName("MyMachineTool", ns))
        ident = await var.obj(mt, "MT", "Identification")
        await var.add(ident, "MT.Identification", "SerialNumber", "SN-MT-9", ua.VariantType.String)
        monitoring = await var.obj(mt, "MT", "Monitoring")
        channel = await var.obj(monitoring, "MT.Monitoring", "Channel1")
        await var.add(channel, "MT.Monitoring.Channel1", "ChannelState", 0, ua.VariantType.Int32)
        await var.add(monitoring, "MT.Monitoring", "Leistung", 3.5, ua.VariantType.Double, unit=("kW", "KWT"))
        await var.add(monitoring, "MT.Monitoring", "Power", 80.0, ua.VariantType.Double, unit=("%", "P1"))
        await var.add(monitoring, "MT.Monitoring", "Temperatures", [20.0, 21.0], ua.VariantType.Double)
        production = await var.obj(mt, "MT", "Production")
        stats = await var.obj(production, "MT.Production", "Statistics")
        await var.add(stats, "MT.Production.Statistics", "PartsProducedInLifetime", 1200, ua.VariantType.UInt32)

        imm = await server.nodes.objects.add_object(ua.NodeId("IMM", ns), ua.QualifiedName("IMM-7", ns))
        info = await var.obj(imm, "IMM", "MachineInformation")
        await var.add(info, "IMM.MachineInformation", "SerialNumber", "SN-IMM-7", ua.VariantType.String)
        job = await var.obj(imm, "IMM", "ActiveJobValues")
        for name, value in (("JobPartsCounter", 40), ("JobGoodPartsCounter", 38), ("JobBadPartsCounter", 2)):
            await job.add_property(ua.NodeId(f"IMM.Job.{name}", ns), ua.QualifiedName(name, ns),
                                   ua.Variant(value, ua.VariantType.UInt64))
        await var.add(imm, "IMM", "EnergyTotal", 123456.0, ua.VariantType.Double, unit=("Wh", "WHR"))

        # An aggregating server, KEPServerEX-style: Channel/Device/Tag, with its own _ folders.
        channel = await server.nodes.objects.add_object(ua.NodeId("Channel1", ns), ua.QualifiedName("Channel1", ns))
        stats = await var.obj(channel, "Channel1", "_Statistics")
        await var.add(stats, "Channel1._Statistics", "_SuccessfulReads", 9, ua.VariantType.UInt32)
        for dev in ("Press1", "Press2"):
            obj = await var.obj(channel, "Channel1", dev)
            await var.add(obj, f"Channel1.{dev}", "PartCount", 5, ua.VariantType.UInt32)
            system = await var.obj(obj, f"Channel1.{dev}", "_System")
            await var.add(system, f"Channel1.{dev}._System", "_Error", False, ua.VariantType.Boolean)

        chain = await server.nodes.objects.add_object(ua.NodeId("Deep", ns), ua.QualifiedName("Deep", ns))
        for level in range(1, 8):
            chain = await var.obj(chain, f"Deep.{level - 1}", f"L{level}")
        await var.add(chain, "Deep.7", "Bottom", 1.0, ua.VariantType.Double)
        bulk = await server.nodes.objects.add_object(ua.NodeId("Bulk", ns), ua.QualifiedName("Bulk", ns))
        for i in range(300):
            await var.add(bulk, "Bulk", f"Tag{i:03d}", float(i), ua.VariantType.Double)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


class _Adder:
    def __init__(self, ns: int):
        self.ns = ns

    async def obj(self, parent: Any, prefix: str, name: str) -> Any:
        return await parent.add_object(ua.NodeId(f"{prefix}.{name}", self.ns), ua.QualifiedName(name, self.ns))

    async def add(self, parent: Any, prefix: str, name: str, value: Any, vtype: ua.VariantType, *,
                  unit: tuple[str, str] | None = None) -> Any:
        node = await parent.add_variable(ua.NodeId(f"{prefix}.{name}", self.ns), ua.QualifiedName(name, self.ns),
                                         ua.Variant(value, vtype))
        if unit is not None:
            text, code = unit
            unit_id = int.from_bytes(code.encode().rjust(3, b"\0"), "big")
            await node.add_property(ua.NodeId(f"{prefix}.{name}.EU", self.ns), ua.QualifiedName("EngineeringUnits", 0),
                                    ua.Variant(ua.EUInformation(
                                        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                                        UnitId=unit_id, DisplayName=ua.LocalizedText(text)),
                                        ua.VariantType.ExtensionObject))
        return node


@pytest.fixture
async def companion() -> AsyncIterator[CompanionServer]:
    server = CompanionServer(free_port())
    await server.start()
    yield server
    await server.stop()


def _conn(endpoint: str, *extra: str) -> Any:
    args = build_parser().parse_args(["discover", "opcua", endpoint, *extra])
    return connection_from_args(args)


async def test_companion_specs_units_and_names_suggest_roles_per_machine(companion, tmp_path: Path) -> None:
    out = tmp_path / "devices.yaml"
    assert await run_cli("discover", "opcua", companion.endpoint, "--depth", "5", "-o", str(out)) == 0
    found = await discover(companion.endpoint, _conn(companion.endpoint), depth=5, max_nodes=5000)
    machines = {m.name: m for m in found.machines}
    assert {"MyMachineTool", "IMM-7"} <= set(machines)
    mt = {".".join(v.path): v for v in machines["MyMachineTool"].variables}
    assert mt["Monitoring.Leistung"].unit == "kW" and mt["Monitoring.Leistung"].data_type == "Double"
    assert mt["Monitoring.Leistung"].access == "r"
    roles = {p: (v.suggestion.role if v.suggestion else None) for p, v in mt.items()}
    assert roles == {"Identification.SerialNumber": None, "Monitoring.Channel1.ChannelState": "state",
                     "Monitoring.Leistung": "power_kw", "Monitoring.Power": None,   # % is not kW
                     "Monitoring.Temperatures": None, "Production.Statistics.PartsProducedInLifetime": "count_total"}
    assert not mt["Monitoring.Temperatures"].collectable                           # an array
    assert "40501" in mt["Production.Statistics.PartsProducedInLifetime"].suggestion.why

    devices = {d["id"]: d for d in yaml.safe_load(out.read_text(encoding="utf-8"))["devices"]}
    tool = devices["MyMachineTool"]
    assert tool["connection"]["serial_node"] == f"nsu={COMPANION_NS};s=MT.Identification.SerialNumber"
    assert {s["name"] for s in tool["signals"]} == {"state", "power_kw", "Monitoring.Power", "count_total"}
    imm = devices["IMM-7"]
    assert imm["connection"]["serial_node"] == f"nsu={COMPANION_NS};s=IMM.MachineInformation.SerialNumber"
    # Many machines on one endpoint: each gets its folder as node_root, signals as browse paths
    # under it (names survive a rebuilt project), and no identity block (it cannot carry the root).
    assert imm["connection"]["node_root"] == f"/Objects/nsu={COMPANION_NS};IMM-7"
    assert tool["connection"]["node_root"] == f"/Objects/nsu={COMPANION_NS};Machines/MyMachineTool"
    assert "identity" not in imm
    by_name = {s["name"]: s for s in imm["signals"]}
    assert by_name["count_total"]["address"] == f"nsu={COMPANION_NS};ActiveJobValues/JobPartsCounter"
    assert by_name["count_good"]["address"] == f"nsu={COMPANION_NS};ActiveJobValues/JobGoodPartsCounter"
    assert by_name["count_reject"]["address"] == f"nsu={COMPANION_NS};ActiveJobValues/JobBadPartsCounter"
    assert by_name["energy_kwh"] == {"name": "energy_kwh", "address": f"nsu={COMPANION_NS};EnergyTotal",
                                     "scale": 0.001}                                # Wh -> kWh
    # One device per machine behind an aggregating server; its own _ folders are no machines.
    assert {"Press1", "Press2"} <= set(devices)
    assert [d["name"] for d in devices.values() if d["name"].startswith("_")] == []
    assert devices["Press1"]["signals"] == [{"name": "count_total", "address": f"nsu={COMPANION_NS};PartCount"}]
    assert devices["Press1"]["connection"]["node_root"] == f"/Objects/nsu={COMPANION_NS};Channel1/Press1"
    assert devices["Press1"]["connection"]["endpoint"] == devices["Press2"]["connection"]["endpoint"]
    # The deep chain is cut at --depth 5 and says so; the YAML is still a valid config.
    assert "--depth 5 reached" in found.truncated
    assert not any("Bottom" in v.path for m in found.machines for v in m.variables)
    config = load_config(out)
    assert {d.id for d in config.devices} >= {"MyMachineTool", "IMM-7"}

    gw = Gateway(config)   # the suggested devices collect, companion properties included
    await gw.start()
    try:
        await wait_for(lambda: all(s in gw.store.signals("IMM-7") for s in by_name), "IMM-7 signals")
        assert [s.value for s in gw.store.samples("IMM-7", "energy_kwh")][-1] == pytest.approx(123.456)
        await wait_for(lambda: all("count_total" in gw.store.signals(d) for d in ("Press1", "Press2")),
                       "both presses behind the aggregating server")
        press = {d: gw.store.device(d) for d in ("Press1", "Press2")}
        assert all(r is not None and r.identity is not None for r in press.values())
        fingerprints = {r.identity.fingerprint() for r in press.values()}   # type: ignore[union-attr]
        assert len(fingerprints) == 2          # distinct machines: their roots tell them apart
        assert gw.store.events(kind="identity_changed") == []
    finally:
        await gw.stop()


async def test_max_nodes_bounds_the_browse_and_progress_is_reported(companion) -> None:
    seen: list[tuple[int, int]] = []
    found = await discover(companion.endpoint, _conn(companion.endpoint), depth=10, max_nodes=50,
                           progress=lambda done, limit: seen.append((done, limit)))
    assert found.nodes_browsed == 50 and found.truncated == "--max-nodes 50 reached"
    assert seen and seen[-1] == (50, 50) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "stopped: --max-nodes 50 reached" in found.table()


# --- security -----------------------------------------------------------------


async def test_secured_server_endpoints_listed_and_browsed_with_username(tmp_path: Path, monkeypatch) -> None:
    server = SecureOpcUaTestServer(free_port(), tmp_path / "server-pki", users={"op": "s3cret"})
    await server.start()
    try:
        with pytest.raises(SourceError, match=r"it offers: .*Basic256Sha256/SignAndEncrypt \(UserName\)"):
            await discover(server.endpoint, _conn(server.endpoint))
        monkeypatch.setenv("UA_PW", "s3cret")
        args = ("--security", "Aes128_Sha256_RsaOaep/SignAndEncrypt", "--user", "op", "--password-env", "UA_PW",
                "--pki-dir", str(tmp_path / "pki"))
        conn = _conn(server.endpoint, *args)
        found: Discovery = await discover(server.endpoint, conn)
        offered = {(e.policy, e.mode) for e in found.endpoints}
        assert ("Aes256_Sha256_RsaPss", "Sign") in offered and ("Basic256Sha256", "SignAndEncrypt") in offered
        assert all(e.user_tokens == ("UserName",) for e in found.endpoints)
        assert [m.name for m in found.machines] == ["m1"]
        out = tmp_path / "devices.yaml"
        assert await run_cli("discover", "opcua", server.endpoint, *args, "-o", str(out)) == 0
        text = out.read_text(encoding="utf-8")
        assert "s3cret" not in text            # the password's source is written, never the password
        (device,) = load_config(out).devices
        assert device.connection["security_mode"] == "SignAndEncrypt"
        assert device.connection["password_env"] == "UA_PW" and device.connection["username"] == "op"
        assert (tmp_path / "pki" / "pins").is_dir()   # the server's certificate pinned at discovery
    finally:
        await server.stop()


def test_bad_security_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="security_policy"):
        _conn("opc.tcp://127.0.0.1:4840", "--security", "Basic128Rsa15")
    with pytest.raises(ConfigError, match="password"):
        _conn("opc.tcp://127.0.0.1:4840", "--user", "op")


async def test_unreachable_server_is_a_clear_error() -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match="cannot ask for endpoints"):
        await discover(url, _conn(url, "--timeout", "1"))


# --- the role rules alone -------------------------------------------------------


def _var(path: str, data_type: str = "Double", unit: str = "") -> VariableFound:
    return VariableFound("ns=1;s=x", tuple(path.split(".")), data_type=data_type, access="r", unit=unit,
                         collectable=True)


def test_one_variable_per_role_strongest_evidence_first() -> None:
    vs = [_var("Power"), _var("Main.Leistung", unit="kW"), _var("Status", "Int32"), _var("Alarm", "Int32"),
          _var("Energy", unit="MWh"), _var("PartCount", "String")]
    suggest_roles(vs)
    got = [(".".join(v.path), v.suggestion.role if v.suggestion else None) for v in vs]
    assert got == [("Power", None), ("Main.Leistung", "power_kw"), ("Status", "state"),
                   ("Alarm", None),          # an alarm code, not the on/off the role means
                   ("Energy", "energy_kwh"), ("PartCount", None)]   # a counter must be a number
    assert vs[4].suggestion is not None and vs[4].suggestion.scale == 1000.0
