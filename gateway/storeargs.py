"""The store a read-only command (`status`, `deadletters`) looks at: `-c FILE`'s or `--store`'s."""
from __future__ import annotations

import argparse
import os

from edge.errors import StoreError


def store_path(args: argparse.Namespace) -> str:
    """The path, checked to exist: opening a missing store read-only would say less."""
    if args.config:
        from .config import load_config

        path = load_config(args.config).store_path
    else:
        path = args.store
    if not os.path.exists(path):
        raise StoreError(f"no store at {path}: has the gateway run with this config yet?")
    return path
