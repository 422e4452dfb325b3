"""find_flags: every distinctness check over the joined features of a review."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..cube import DeviceInfo, Flag
from .claimed import AgainstSet, claimed_flags
from .clones import clone_links, with_raw_direction
from .config import DistinctConfig
from .features import FeatureBlock
from .identity import identity_links
from .keeper import keep_key
from .links import flags_from_links
from .regularity import regularity_flags
from .replays import replay_findings
from .timestamps import timestamp_flags


def find_flags(
    block: FeatureBlock,
    devices: Sequence[DeviceInfo],
    config: DistinctConfig | None = None,
    against: AgainstSet | Sequence[AgainstSet] | None = None,
    raw_timing: Mapping[str, np.ndarray] | None = None,
) -> list[Flag]:
    """Flags of devices not to count as distinct, in a stable order (device order, then reason).

    `devices` are in block order. Of each group of devices found to be one machine exactly one
    is kept (see `keeper`: not the one that lags, then identity evidence, then earliest first
    data and id); the others are flagged.
    """
    config = config or DistinctConfig()
    if [d.id for d in devices] != block.device_ids:
        raise ValueError("devices must be the block's devices, in the block's order")
    order_key = block.order_key

    links = list(identity_links(devices, config, order_key))
    replay_flags, replay_links = replay_findings(block, config, order_key)
    links += replay_links
    links += with_raw_direction(clone_links(block, config), block.device_ids, raw_timing)

    flags = flags_from_links(links, block.device_ids, keep_key(links, devices, order_key))
    flags += replay_flags
    flags += regularity_flags(block, config)
    flags += timestamp_flags(block.device_ids, raw_timing, config)
    if against is not None:
        earlier = [against] if isinstance(against, AgainstSet) else list(against)
        flags += claimed_flags(block, devices, earlier, config)

    position = {d: i for i, d in enumerate(block.device_ids)}
    return sorted(flags, key=lambda f: (position[f.device_id], f.reason, f.other_device or ""))
