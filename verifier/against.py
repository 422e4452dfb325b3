"""Earlier claims for `--against`: a store, or a YAML/JSON list of what was claimed.

A list file is either a plain list of device ids, or a mapping:

```yaml
label: 2023 voucher 设备物联          # optional, names the claim in the evidence
ids: [press-01, press-02]
serials: [SN123]
fingerprints: ["opcua:urn:acme:press:1"]
```
"""
from __future__ import annotations

import datetime as dt
import os

import yaml

from edge.errors import VerificationInputError

from .reading import StoreReader
from .window import Window

SQLITE_MAGIC = b"SQLite format 3\x00"
# An earlier claim's history may lie well before the review window: read this far back.
AGAINST_LOOKBACK_DAYS = 365
AGAINST_CHUNK_DEVICES = 16   # long windows: keep each chunk small


def load_against(source: str, window: Window):
    from .distinct import AgainstSet, concat_features, device_features
    if not os.path.exists(source):
        raise VerificationInputError(f"--against {source!r} does not exist")
    if not os.path.isfile(source):
        raise VerificationInputError(f"--against {source!r} is not a file")
    try:
        with open(source, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise VerificationInputError(f"cannot read --against {source!r}: {e.strerror}") from None
    if head == SQLITE_MAGIC:
        lookback = Window(window.end - dt.timedelta(days=AGAINST_LOOKBACK_DAYS + window.n_days),
                          window.end)
        with StoreReader([source]) as reader:
            devices = reader.devices()
            # Read only the days the earlier store holds, however long the lookback is.
            span = reader.data_span(lookback)
            blocks = [] if span is None else [
                device_features(c) for c in reader.iter_cubes(lookback.clip(*span),
                                                              AGAINST_CHUNK_DEVICES)]
        return AgainstSet.from_devices(devices, concat_features(blocks) if blocks else None,
                                       label=source)
    try:
        with open(source, encoding="utf-8") as f:
            raw = yaml.safe_load(f)   # JSON is YAML too
    except OSError as e:
        raise VerificationInputError(f"cannot read --against {source!r}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise VerificationInputError(f"--against {source}: neither a store nor YAML/JSON: {e}") \
            from None
    if isinstance(raw, list):
        return AgainstSet.from_lists(ids=[str(x) for x in raw], label=source)
    if isinstance(raw, dict):
        unknown = set(raw) - {"label", "ids", "serials", "fingerprints"}
        if unknown:
            raise VerificationInputError(
                f"--against {source}: unknown keys {sorted(unknown)}; "
                "valid: label, ids, serials, fingerprints")
        def as_list(key: str) -> list[str]:
            values = raw.get(key) or []
            if not isinstance(values, list):
                raise VerificationInputError(
                    f"--against {source}: {key} must be a list, got {values!r}")
            return [str(x) for x in values]
        return AgainstSet.from_lists(as_list("ids"), as_list("serials"), as_list("fingerprints"),
                                     label=str(raw.get("label") or source))
    raise VerificationInputError(
        f"--against {source}: expected a list of device ids or a mapping with ids/serials/"
        "fingerprints")
