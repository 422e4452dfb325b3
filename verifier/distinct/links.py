"""Links between devices that are one machine, and choosing which one of each group is counted.

Checks that compare two devices (shared identity, shared endpoint, clone, same-day copy) emit
`Link`s. Links join devices into groups (connected components); of each group exactly one device
is kept (`keeper.keep_key`: not a follower, then identity evidence, then earliest first data
and id) and every other member is flagged with the link that
ties it to a device ahead of it, so the reviewer can follow the chain back to the kept one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..cube import Flag


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    reason: str
    message: str
    measure: str = ""
    value: float | None = None
    threshold: float | None = None
    days: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    follower: int | None = None    # a or b when the link says which one copies the other


def flags_from_links(
    links: Iterable[Link],
    ids: list[str],
    order_key: Callable[[int], tuple],
) -> list[Flag]:
    links = list(links)
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for link in links:
        ra, rb = root(link.a), root(link.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    keeper: dict[int, int] = {}
    for i in sorted({x for link in links for x in (link.a, link.b)}, key=order_key):
        keeper.setdefault(root(i), i)

    by_device: dict[int, list[tuple[int, Link]]] = {}
    for link in links:
        by_device.setdefault(link.a, []).append((link.b, link))
        by_device.setdefault(link.b, []).append((link.a, link))

    flags: list[Flag] = []
    for i in sorted(by_device, key=order_key):
        k = keeper[root(i)]
        if i == k:
            continue
        edges = by_device[i]
        ahead = [(j, link) for j, link in edges if order_key(j) < order_key(i)]
        for j, link in sorted(ahead or edges, key=lambda e: (e[1].reason, order_key(e[0]))):
            flags.append(Flag(
                device_id=ids[i],
                reason=link.reason,
                message=link.message.replace("{device}", ids[i]).replace("{other}", ids[j]),
                other_device=ids[j],
                days=link.days,
                measure=link.measure,
                value=link.value,
                threshold=link.threshold,
                evidence={**link.evidence, "kept_device": ids[k]},
            ))
    return flags
