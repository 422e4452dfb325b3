"""Renders the CLI reference (docs/cli.md) from the argparse parser itself, so the docs cannot
drift from the code: tests/test_docs.py fails when the file is stale.

    python -m gateway.clidoc > docs/cli.md
"""
from __future__ import annotations

import argparse
import os

from .cli import build_parser

HEADER = """# shangyun command reference

Generated from the parser by `python -m gateway.clidoc > docs/cli.md`; a test fails when it
is out of date. Exit status: 0 success (verify: PASS), 1 failure (verify: FAIL), 2 bad input.
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    # Help text wraps to the terminal; fix the width so the output is the same everywhere.
    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    parts = [HEADER, "```", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subparsers(parser).items():
        parts += [f"## shangyun {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
