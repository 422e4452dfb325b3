"""replay: a device-day whose rounded rollups exactly repeat an earlier day of the same device or
of another device.

The earliest occurrence of a digest is the original. A later repeat flags the device that shows
it (`replay`), whoever it is. The same day on two devices is one machine under two ids: that is a
link, and the grouping decides which of them is kept.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from ..cube import Flag
from .config import DistinctConfig
from .features import FeatureBlock
from .links import Link


def digest_index(block: FeatureBlock) -> dict[int, list[tuple[int, int]]]:
    """digest -> [(device, day)] over informative days, for the digests seen more than once."""
    dev, day = np.nonzero(block.day_informative)
    digests = block.day_digest[dev, day]
    order = np.argsort(digests, kind="stable")
    digests, dev, day = digests[order], dev[order], day[order]
    repeated = np.zeros(len(digests), dtype=bool)
    if len(digests) > 1:
        same = digests[1:] == digests[:-1]
        repeated[1:] |= same
        repeated[:-1] |= same
    index: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for d, i, k in zip(digests[repeated], dev[repeated], day[repeated]):
        index[int(d)].append((int(i), int(k)))
    return index


def replay_findings(
    block: FeatureBlock,
    config: DistinctConfig,
    order_key: Callable[[int], tuple[int, str]],
) -> tuple[list[Flag], list[Link]]:
    # (copier, source) -> [(copier day, source day)]; source == copier for own replays
    repeats: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    same_day: dict[tuple[int, int], list[int]] = defaultdict(list)
    for occurrences in digest_index(block).values():
        occurrences.sort(key=lambda o: (o[1], order_key(o[0])))
        src_dev, src_day = occurrences[0]
        for dev, day in occurrences[1:]:
            if day == src_day and dev != src_dev:
                same_day[(dev, src_dev)].append(day)
            elif day != src_day:
                repeats[(dev, src_dev)].append((day, src_day))

    ids = block.device_ids
    flags: list[Flag] = []
    for (dev, src), pairs in sorted(repeats.items()):
        if len(pairs) < config.replay_min_days:
            continue
        pairs.sort()
        own = dev == src
        whose = "its own earlier days" if own else f"days of {ids[src]}"
        flags.append(Flag(
            device_id=ids[dev],
            reason="replay",
            message=f"{ids[dev]} repeats {whose} exactly on {len(pairs)} day(s)",
            other_device=None if own else ids[src],
            days=block.day_labels([p[0] for p in pairs]),
            measure="identical_days",
            value=float(len(pairs)),
            threshold=float(config.replay_min_days),
            evidence={"original_days": list(block.day_labels([p[1] for p in pairs]))},
        ))
    links = [
        Link(
            a=src, b=dev, reason="replay",
            message="{device} shows exactly the same data as {other} on the same day(s)",
            measure="identical_days", value=float(len(days)),
            threshold=float(config.replay_min_days),
            days=block.day_labels(sorted(days)),
            evidence={"same_day": True},
        )
        for (dev, src), days in sorted(same_day.items())
        if len(days) >= config.replay_min_days
    ]
    return flags, links
