"""Monitored-item requests, the EURange a percent deadband needs, and what the server revised.

A percent deadband is a percentage of the variable's EURange (OPC UA Part 8, AnalogItemType):
a server asked for one on a variable without EURange refuses it or, worse (asyncua), ignores it
and reports every change. So the EURange is read first and a signal whose node has none is
refused with a message that says so, before anything is requested.

Servers revise sampling intervals and queue sizes to what they can do (asyncua: sampling at the
publishing interval). Operators need to know, once: per (re)subscription one line sums up the
revisions ("m01: 20 items, sampling revised 100 ms → 250 ms on 20"), not one line per item.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from connectors.opcua.config import MonitoredNode, OpcUaConnection
from connectors.opcua.planner import batches
from connectors.opcua.resolve import local_node_id

_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)


def item_request(sub: Subscription, client: Client, node_id: ua.NodeId, mon: MonitoredNode,
                 cfg: OpcUaConnection) -> ua.MonitoredItemCreateRequest:
    """One monitored item with the signal's parameters, else the connection's."""
    sampling = mon.sampling_interval_ms if mon.sampling_interval_ms is not None else cfg.sampling_interval_ms
    mfilter = None
    if mon.deadband is not None:
        mfilter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=ua.DeadbandType.Absolute if mon.deadband.type == "absolute" else ua.DeadbandType.Percent,
            DeadbandValue=mon.deadband.value)
    return sub._make_monitored_item_request(
        client.get_node(node_id), ua.AttributeIds.Value, mfilter, mon.queue_size or cfg.queue_size,
        ua.MonitoringMode.Reporting, cfg.publishing_interval_ms if sampling is None else sampling)


async def percent_deadband_ranges(client: Client, nodes: Sequence[ua.NodeId], *,
                                  max_per_call: int) -> dict[ua.NodeId, str | None]:
    """Per node, None when it has a usable EURange, else why a percent deadband cannot work."""
    out: dict[ua.NodeId, str | None] = {}
    paths = [ua.BrowsePath(StartingNode=n, RelativePath=ua.RelativePath(Elements=[ua.RelativePathElement(
        ReferenceTypeId=_HAS_PROPERTY, IsInverse=False, IncludeSubtypes=True,
        TargetName=ua.QualifiedName("EURange", 0))])) for n in nodes]
    found: dict[ua.NodeId, ua.NodeId] = {}
    for chunk_nodes, chunk in zip(batches(list(nodes), max_per_call), batches(paths, max_per_call)):
        results = await client.uaclient.translate_browsepaths_to_nodeids(chunk)
        for node, res in zip(chunk_nodes, results):
            target = local_node_id(res.Targets[0].TargetId) if res.StatusCode.is_good() and res.Targets else None
            if target is not None:
                found[node] = target
            else:
                out[node] = "the node has no EURange property"
    if found:
        values = await client.read_values([client.get_node(p) for p in found.values()])
        for node, rng in zip(found, values):
            low, high = getattr(rng, "Low", None), getattr(rng, "High", None)
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or not high > low:
                out[node] = f"its EURange is not a range (Low={low!r}, High={high!r})"
            else:
                out[node] = None
    return out


def percent_refusal(node_text: str, why: str) -> str:
    return (f"percent deadband on {node_text}: {why}; a percent deadband is a share of the "
            f"EURange, so use an absolute deadband ({{type: absolute, value: ...}}) for this node")


@dataclass
class Revisions:
    """Requested → revised sampling intervals and queue sizes over one subscription's items."""

    items: int = 0
    sampling: Counter[tuple[float, float]] = field(default_factory=Counter)
    queue: Counter[tuple[int, int]] = field(default_factory=Counter)

    def add(self, request: ua.MonitoredItemCreateRequest, result: ua.MonitoredItemCreateResult) -> None:
        if not result.StatusCode.is_good():
            return
        self.items += 1
        asked = request.RequestedParameters
        if result.RevisedSamplingInterval != asked.SamplingInterval:
            self.sampling[(asked.SamplingInterval, result.RevisedSamplingInterval)] += 1
        if result.RevisedQueueSize != asked.QueueSize:
            self.queue[(asked.QueueSize, result.RevisedQueueSize)] += 1

    def summary(self, device_id: str) -> str | None:
        """The one line to log, or None when the server granted everything as asked."""
        parts = []
        if self.sampling:
            parts.append("sampling revised " + ", ".join(
                f"{_ms(a)} ms → {_ms(b)} ms on {n}" for (a, b), n in sorted(self.sampling.items())))
        if self.queue:
            parts.append("queue size revised " + ", ".join(
                f"{a} → {b} on {n}" for (a, b), n in sorted(self.queue.items())))
        if not parts:
            return None
        return f"{device_id}: {self.items} items, " + "; ".join(parts)


def _ms(value: float) -> str:
    return f"{value:g}"


class RecordingServer:
    """Stands in for a subscription's link to the server to keep the CreateMonitoredItems
    results, revised values included, which asyncua reduces to item ids."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.results: list[tuple[ua.MonitoredItemCreateRequest, ua.MonitoredItemCreateResult]] = []

    async def create_monitored_items(self, params: ua.CreateMonitoredItemsParameters) -> list[
            ua.MonitoredItemCreateResult]:
        results = await self._server.create_monitored_items(params)
        self.results.extend(zip(params.ItemsToCreate, results))
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def revisions(self) -> Revisions:
        rev = Revisions()
        for request, result in self.results:
            rev.add(request, result)
        return rev


def record(sub: Subscription) -> RecordingServer:
    recorder = RecordingServer(sub.server)
    sub.server = recorder  # type: ignore[assignment]
    return recorder

