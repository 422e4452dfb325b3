"""Browse paths as written in device YAML (validation only, no I/O).

    /Objects/2:Machine1/2:Counters/2:Good             absolute, from the Root folder
    /Objects/nsu=urn:acme:press;Machine1/Counters      a namespace by URI (resolved at connect)
    2:Counters/2:Good                                  relative to the device's node_root

A segment is `<index>:<name>`, `nsu=<uri>;<name>` or a bare `<name>`. A bare name is in the
namespace of the segment before it; the first one in namespace 0 in an absolute path (Objects,
Server...) and in the node root's namespace in a relative one. Below a machine's folder nearly
every name is in the machine's namespace, so it is written once: /Objects/2:Machine1/Counters/Good.
Numeric node ids move when a PLC project is rebuilt; browse names do not, so a path is resolved
again at every connect. A URI may itself contain '/', so an `nsu=` segment runs to its ';'.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_INDEXED = re.compile(r"^(\d+):(.+)$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One browse name; neither index nor uri set: the path's default namespace."""

    name: str
    namespace_index: int | None = None
    namespace_uri: str | None = None

    def __str__(self) -> str:
        if self.namespace_uri is not None:
            return f"nsu={self.namespace_uri};{self.name}"
        if self.namespace_index is not None:
            return f"{self.namespace_index}:{self.name}"
        return self.name


@dataclass(frozen=True, slots=True)
class BrowsePath:
    absolute: bool
    segments: tuple[Segment, ...]

    def __str__(self) -> str:
        return ("/" if self.absolute else "") + "/".join(str(s) for s in self.segments)

    def prefix(self, n: int) -> "BrowsePath":
        return BrowsePath(self.absolute, self.segments[:n])


def parse_browse_path(text: str) -> BrowsePath:
    raw = text.strip()
    absolute = raw.startswith("/")
    rest = raw[1:] if absolute else raw
    segments: list[Segment] = []
    while rest:
        if rest.startswith("nsu="):
            semi = rest.find(";")
            if semi < 0:
                raise ValueError(f"{text!r}: segment {rest!r} has nsu=<uri> but no ';<name>' after it")
            uri, rest = rest[4:semi], rest[semi + 1:]
            name, _, rest = rest.partition("/")
            if not uri:
                raise ValueError(f"{text!r}: empty namespace URI in nsu=")
            segments.append(Segment(_name(text, name), namespace_uri=uri))
            continue
        part, _, rest = rest.partition("/")
        m = _INDEXED.match(part)
        if m is not None:
            segments.append(Segment(_name(text, m.group(2)), namespace_index=int(m.group(1))))
        else:
            segments.append(Segment(_name(text, part)))
    if not segments:
        raise ValueError(f"{text!r} is not a browse path: expected /Objects/2:Machine1/2:Counters "
                         f"or, under a node_root, 2:Counters/2:Good")
    return BrowsePath(absolute, tuple(segments))


def _name(text: str, name: str) -> str:
    if not name.strip():
        raise ValueError(f"{text!r}: empty segment in browse path (a doubled or trailing '/')")
    return name
