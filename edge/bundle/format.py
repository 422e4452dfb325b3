"""The bundle's container: a zip with a manifest, JSON / JSON-lines members and one stored blob
file of rollups (docs/bundle.md). Opening it checks only what makes it readable at all (a zip,
our format, a version we know); whether its content is intact is `edge.bundle.check`'s job.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any, Iterator

from ..errors import VerificationInputError
from ..store.ledger import GENESIS as ZERO_HASH
from ..store.ledger import canon, entry_hash

__all__ = ["Bundle", "BundleError", "RollupRef", "ZERO_HASH", "canon", "entry_hash", "jsonl"]

FORMAT = "shangyun-bundle"
VERSION = 1

MANIFEST = "manifest.json"
DEVICES = "devices.json"
EVENTS = "events.jsonl"
ROLLUP_INDEX = "rollups.jsonl"
ROLLUP_BLOBS = "rollups.bin"
LEDGER = "ledger.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
RECEIPTS = "receipts.jsonl"
CAPTURE_STATS = "capture_stats.jsonl"
PUBLIC_KEY = "evidence.pub"
RAW_SAMPLES = "raw_samples.jsonl"

NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_MAGIC = 0x04034B50


class BundleError(VerificationInputError):
    """The file is not a bundle this shangyun can read: exit status 2, never "altered"."""


def jsonl(items: Any) -> Iterator[bytes]:
    for item in items:
        yield canon(item) + b"\n"


@dataclass(frozen=True)
class RollupRef:
    """One rollup day in the bundle: where its blob is in rollups.bin and the store row's
    metadata (layout version, day totals) as exported."""

    device_id: str
    day: str
    layout_version: int
    offset: int
    length: int
    sha256: str
    meta: dict[str, Any]


class Bundle:
    """A bundle opened for reading. `Bundle.open(path)`; BundleError when it cannot be read."""

    def __init__(self, path: str, zf: zipfile.ZipFile, manifest: dict[str, Any]):
        self.path = path
        self._zf = zf
        self.manifest = manifest
        self._raw: IO[bytes] | None = None
        self._blob_start: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Bundle":
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise BundleError(f"bundle {p!r} does not exist or is not a file")
        try:
            zf = zipfile.ZipFile(p)
        except (zipfile.BadZipFile, OSError) as e:
            raise BundleError(f"{p!r} is not a bundle (not a zip file: {e})") from None
        try:
            try:
                raw = zf.read(MANIFEST)
            except KeyError:
                raise BundleError(f"{p!r} is not a bundle: it has no {MANIFEST}") from None
            try:
                manifest = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise BundleError(f"{p!r}: {MANIFEST} is not JSON: {e}") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise BundleError(f"{p!r} is not a shangyun bundle ({MANIFEST} format is "
                                  f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                                  f"expected {FORMAT!r})")
            if manifest.get("version") != VERSION:
                raise BundleError(f"{p!r}: bundle format version {manifest.get('version')!r}; "
                                  f"this shangyun reads version {VERSION}")
            if not isinstance(manifest.get("files"), dict):
                raise BundleError(f"{p!r}: {MANIFEST} lists no files")
        except BaseException:
            zf.close()
            raise
        return cls(p, zf, manifest)

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self._zf.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ members
    def names(self) -> list[str]:
        return self._zf.namelist()

    def has(self, name: str) -> bool:
        try:
            self._zf.getinfo(name)
        except KeyError:
            return False
        return True

    def member_sha256(self, name: str) -> str:
        h = hashlib.sha256()
        try:
            with self._zf.open(name) as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise BundleError(f"{self.path!r}: member {name} cannot be read: {e}") from None
        return h.hexdigest()

    def read(self, name: str) -> bytes:
        try:
            return self._zf.read(name)
        except KeyError:
            raise BundleError(f"{self.path!r}: member {name} is missing") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise BundleError(f"{self.path!r}: member {name} cannot be read: {e}") from None

    def json(self, name: str, default: Any = None) -> Any:
        if not self.has(name):
            return default
        try:
            return json.loads(self.read(name))
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"{self.path!r}: {name} is not JSON: {e}") from None

    def lines(self, name: str) -> Iterator[tuple[int, Any]]:
        """(line number, parsed value) of a JSON-lines member; nothing when it is absent."""
        if not self.has(name):
            return
        with self._zf.open(name) as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield no, json.loads(line)
                except (ValueError, UnicodeDecodeError) as e:
                    raise BundleError(f"{self.path!r}: {name} line {no} is not JSON: {e}") from None

    # ------------------------------------------------------------------ rollups
    def rollup_refs(self) -> list[RollupRef]:
        refs = []
        for no, d in self.lines(ROLLUP_INDEX):
            try:
                refs.append(RollupRef(str(d["device_id"]), str(d["day"]),
                                      int(d["layout_version"]), int(d["offset"]),
                                      int(d["length"]), str(d["sha256"]), dict(d.get("meta", {}))))
            except (KeyError, TypeError, ValueError) as e:
                raise BundleError(f"{self.path!r}: {ROLLUP_INDEX} line {no} is malformed: "
                                  f"{type(e).__name__}: {e}") from None
        return refs

    def rollup_blob(self, ref: RollupRef) -> bytes:
        """The blob's bytes, read straight from the file: rollups.bin is stored uncompressed,
        so a day is one seek and one read, not a decompression from the member's start."""
        start = self._blob_data_start()
        assert self._raw is not None
        size = self._zf.getinfo(ROLLUP_BLOBS).file_size
        if ref.offset < 0 or ref.length < 0 or ref.offset + ref.length > size:
            raise BundleError(f"{self.path!r}: rollup {ref.device_id}/{ref.day} points outside "
                              f"{ROLLUP_BLOBS} ({ref.offset}+{ref.length} > {size})")
        self._raw.seek(start + ref.offset)
        return self._raw.read(ref.length)

    def _blob_data_start(self) -> int:
        if self._blob_start is not None:
            return self._blob_start
        try:
            info = self._zf.getinfo(ROLLUP_BLOBS)
        except KeyError:
            raise BundleError(f"{self.path!r}: member {ROLLUP_BLOBS} is missing") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise BundleError(f"{self.path!r}: {ROLLUP_BLOBS} must be stored uncompressed")
        raw = open(self.path, "rb")
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER.size)
        fields = _LOCAL_HEADER.unpack(header) if len(header) == _LOCAL_HEADER.size else None
        if fields is None or fields[0] != _LOCAL_MAGIC:
            raw.close()
            raise BundleError(f"{self.path!r}: the zip entry of {ROLLUP_BLOBS} is damaged")
        self._raw = raw
        self._blob_start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
        return self._blob_start
