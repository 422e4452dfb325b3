"""Sparkplug B topics: `spBv1.0/{group}/{message type}/{edge node}[/{device}]`."""
from __future__ import annotations

from dataclasses import dataclass

from .codec import SparkplugError

NAMESPACE = "spBv1.0"
NODE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDATA", "DDEATH", "DCMD"})


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    kind: str
    node: str
    device: str | None = None

    @property
    def node_key(self) -> tuple[str, str]:
        return (self.group, self.node)

    def command(self) -> str:
        """The topic on which this topic's edge node takes commands."""
        return f"{NAMESPACE}/{self.group}/NCMD/{self.node}"


def parse(topic: str) -> Topic | None:
    """The Sparkplug topic, None for STATE (a host application's, not an edge node's) and for
    topics outside the namespace; SparkplugError for a malformed one inside it."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        return None
    if len(parts) >= 2 and parts[1] == "STATE":
        return None
    if len(parts) not in (4, 5) or not all(parts[1:]):
        raise SparkplugError(f"topic {topic!r}: expected {NAMESPACE}/group/TYPE/edge_node[/device]")
    _, group, kind, node, *rest = parts
    device = rest[0] if rest else None
    if kind in NODE_TYPES and device is None or kind in DEVICE_TYPES and device is not None:
        return Topic(group, kind, node, device)
    raise SparkplugError(f"topic {topic!r}: {kind!r} is not a Sparkplug B message type "
                         f"{'for a device' if device is not None else 'for an edge node'}")


def node_filter(group: str, node: str) -> str:
    """One subscription for every message of one edge node and its devices (`a/#` matches `a`)."""
    return f"{NAMESPACE}/{group}/+/{node}/#"
