"""The plant's shift calendar referenced from the gateway config: read strictly (a misspelt key
must not silently mean 24/7), and used by the dashboard's OEE exactly as by the verifier's."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.rollup_layout import F, empty_day
from gateway.cli import main
from gateway.config import load_config
from gateway.live import today_figures
from verifier.cube import DeviceInfo, RollupCube
from verifier.oee import analyse_oee

CONFIG = """\
gateway:
  store: {path: plant.db}
  calendar: shifts.yaml
devices:
  - id: press-01
    type: modbus
    connection: {host: 127.0.0.1, port: 502}
    signals:
      - {name: state, address: {table: holding, offset: 0}, states: {1: running}}
"""

CALENDAR = """\
utc_offset_h: 0
shifts:
  - name: day
    start: "08:00"
    end: "20:00"
    breaks: [["12:00", "13:00"]]
planned_states: [planned_stop, setup]
"""

DAY = dt.date(2026, 3, 2)   # a Monday


def write(tmp_path, calendar: str, config: str = CONFIG):
    (tmp_path / "shifts.yaml").write_text(calendar, encoding="utf-8")
    path = tmp_path / "gateway.yaml"
    path.write_text(config, encoding="utf-8")
    return path


def calendar_error(tmp_path, calendar: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, calendar))
    assert info.value.path == str(tmp_path / "shifts.yaml")
    return info.value


def test_the_calendar_and_planned_states_reach_the_dashboard_figures(tmp_path, capsys):
    cfg = load_config(write(tmp_path, CALENDAR))
    assert cfg.oee is not None and cfg.oee.planned_states == {"planned_stop", "setup"}
    assert [s.name for s in cfg.oee.calendar.shifts] == ["day"]
    arr = empty_day()
    arr[F["running_s"], 8 * 60:11 * 60] = 60     # 3 h running in the shift
    arr[F["setup_s"], 11 * 60:12 * 60] = 60      # 1 h setup: planned here
    arr[F["fault_s"], 13 * 60:15 * 60] = 60      # 2 h fault
    arr[F["running_s"], 22 * 60:23 * 60] = 60    # overtime: outside the shift
    figs = today_figures("m1", DAY, arr, None, cfg.oee)
    assert figs["availability"] == round(3 / 5, 3)   # run / (known planned − planned stops)
    default = today_figures("m1", DAY, arr, None)    # 24/7, setup unplanned
    assert default["availability"] == round(4 / 7, 3)
    cube = RollupCube([DeviceInfo(id="m1")], np.array([np.datetime64(DAY, "D")]),
                      arr[None, None], np.ones((1, 1), dtype=bool))
    assert figs["availability"] == round(analyse_oee(cube, cfg.oee)[0].totals.availability, 3)
    assert main(["check", "--no-resolve", "-c", str(tmp_path / "gateway.yaml")]) == 0
    assert "1 shifts" in capsys.readouterr().out


def test_a_misspelt_key_is_refused_not_read_as_24_7(tmp_path):
    err = calendar_error(tmp_path, CALENDAR.replace("shifts:", "shift:"))
    assert err.line == 2 and "shift" in str(err) and "unknown key" in str(err)


def test_an_unknown_key_inside_a_shift_names_its_line(tmp_path):
    err = calendar_error(tmp_path, CALENDAR.replace('start: "08:00"', 'begin: "08:00"'))
    assert "line 4: shifts[0].begin: unknown key" in str(err)
    assert "line 3: shifts[0].start: required key is missing" in str(err)


def test_an_unquoted_time_gets_a_helpful_message(tmp_path):
    err = calendar_error(tmp_path, CALENDAR.replace('end: "20:00"', "end: 20:00"))
    assert err.line == 5 and "quote times" in str(err)


@pytest.mark.parametrize("bad, line", [('"25:00"', 4), ('"8h"', 4), ('"08:60"', 4)])
def test_a_malformed_time_names_its_line(tmp_path, bad, line):
    err = calendar_error(tmp_path, CALENDAR.replace('"08:00"', bad))
    assert err.line == line and "HH:MM" in str(err)


def test_running_or_an_unknown_state_cannot_be_planned(tmp_path):
    assert "running" in str(calendar_error(tmp_path, CALENDAR.replace("setup]", "running]")))
    err = calendar_error(tmp_path, CALENDAR.replace("setup]", "lunch]"))
    assert err.line == 7 and "lunch" in str(err) and "planned_stop" in str(err)


def test_a_missing_calendar_file_names_the_config_line(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path) and info.value.line == 3
    assert main(["check", "-c", str(path)]) == 2


def test_an_empty_calendar_file_is_refused(tmp_path):
    assert "empty" in str(calendar_error(tmp_path, "# nothing yet\n"))
