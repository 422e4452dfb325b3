"""One hand-written MQTT device config for gateway tests that need exact control of what the
device publishes (the simulator's machines publish on their own schedule)."""
from __future__ import annotations

from pathlib import Path


def write_mqtt_config(tmp_path: Path, port: int, *, topic: str, signals: list[str],
                      device_id: str = "m1", **connection: object) -> Path:
    """gw.yaml with one MQTT device whose signals' field paths are their names."""
    extra = "".join(f", {k}: {v}" for k, v in connection.items())
    lines = [f"gateway:\n  store: {{path: {tmp_path / 'gw.db'}}}\n",
             f"devices:\n  - id: {device_id}\n    type: mqtt\n",
             f"    connection: {{host: 127.0.0.1, port: {port}, topic: {topic}{extra}}}\n",
             "    signals:\n"]
    lines += [f"      - {{name: {s}, address: {s}}}\n" for s in signals]
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("".join(lines), encoding="utf-8")
    return cfg
