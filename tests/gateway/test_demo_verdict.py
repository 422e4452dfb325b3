"""The demo's verdict must not depend on when it runs. test_demo.py runs the real demo at the
current time; this one backfills the same simulated history ending at the instants that used to
turn the verdict to FAIL (late Monday and just before midnight, UTC: see test_demo.py) and
verifies it as the demo does."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.config import load_config
from gateway.demo_verify import sample_voucher
from gateway.history import backfill
from gateway.onboarding import dump_config
from tests.gateway.test_demo import HISTORY_DAYS
from verifier.reading import StoreReader
from verifier.verify import VerifyConfig, verify
from verifier.window import Window

pytestmark = pytest.mark.slow

MACHINES = 6
DEMO_SEED = 1  # `shangyun demo --seed` default


def verdict_at(tmp_path, end: dt.datetime, days: int) -> tuple[str, dict]:
    devices = [{"id": f"m{i:02d}", "type": "modbus", "profile": "sim-modbus",
                "connection": {"host": "127.0.0.1", "port": 502}} for i in range(1, MACHINES + 1)]
    path = tmp_path / "gateway.yaml"
    path.write_text(dump_config({"gateway": {"store": {"path": "demo.db"}}, "devices": devices}),
                    encoding="utf-8")
    config = load_config(path)
    asyncio.run(backfill(config, start_ts=end.timestamp() - days * 86_400,
                         end_ts=end.timestamp(), machines=MACHINES, seed=DEMO_SEED))
    with StoreReader([config.store_path]) as reader:
        report = verify(reader, window=Window.last_days(days, today=end.date()),
                        voucher=sample_voucher(MACHINES),
                        config=VerifyConfig(accept_simulated=True,
                                            accept_backfill=True)).to_dict()
    return report["verdict"], {d["id"]: d["reasons"] for d in report["devices"] if not d["counted"]}


@pytest.mark.parametrize("end", ["2026-11-23T20:59", "2026-11-29T23:59"])
def test_the_demo_history_passes_whenever_it_is_run(tmp_path, end):
    verdict, not_counted = verdict_at(
        tmp_path, dt.datetime.fromisoformat(end).replace(tzinfo=dt.timezone.utc), HISTORY_DAYS)
    assert not_counted == {} and verdict == "PASS"
