"""Docs that cannot rot: the CLI reference is regenerated from the parser and compared, and
the README names every command and keeps its two set-up commands on the first screen."""
from __future__ import annotations

from pathlib import Path

from gateway.clidoc import _subparsers, render
from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current():
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == render(), "docs/cli.md is stale: python -m gateway.clidoc > docs/cli.md"


def test_readme_names_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in _subparsers(build_parser()) if f"shangyun {name}" not in readme]
    assert not missing, f"README does not mention: {missing}"


def test_readme_first_screen_has_the_two_setup_commands():
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_connector_has_a_sample_config_that_validates(tmp_path):
    import yaml

    from connectors import registry
    from gateway.config import load_config

    blocks = []
    for name in registry.names():
        sample = ROOT / "connectors" / name / "sample.yaml"
        assert sample.exists(), f"connectors/{name}/sample.yaml is missing"
        data = yaml.safe_load(sample.read_text(encoding="utf-8"))
        blocks += data if isinstance(data, list) else data.get("devices", [data])
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump({"devices": blocks}), encoding="utf-8")
    assert {d.protocol for d in load_config(path).devices} == set(registry.names())
