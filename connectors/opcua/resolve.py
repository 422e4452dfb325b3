"""Signal addresses to the node ids of this session, resolved afresh at every connect.

Namespace indexes and numeric node ids are the server's bookkeeping: a server restarted with
another namespace registered first, or a PLC project rebuilt, gives the same variable another
number. Namespace URIs and browse names stay, so `nsu=` ids go through the namespace array
and browse paths through TranslateBrowsePathsToNodeIds (many per call), each time a session
starts. A path that does not resolve is reported with the last segment that still did.
"""
from __future__ import annotations

from typing import Hashable, Mapping, TypeVar

from asyncua import Client, ua

from connectors.opcua.config import ParsedNodeId, Target
from connectors.opcua.paths import BrowsePath, Segment
from connectors.opcua.planner import batches

K = TypeVar("K", bound=Hashable)

ROOT = ua.NodeId(ua.ObjectIds.RootFolder)
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)


class Unresolved(Exception):
    """An address this server does not have (a namespace, a browse path): that signal only."""


class Resolver:
    """Resolution against one session: its namespace array, and where relative paths start."""

    def __init__(self, client: Client, namespaces: list[str], *, max_per_call: int = 500,
                 root: ua.NodeId | None = None, root_text: str = "") -> None:
        self.client = client
        self.namespaces = namespaces
        self.max_per_call = max_per_call
        self.root = root
        self.root_text = root_text

    def namespace(self, uri: str) -> int:
        try:
            return self.namespaces.index(uri)
        except ValueError:
            raise Unresolved(f"server has no namespace {uri!r} (it has {self.namespaces})") from None

    def node_id(self, parsed: ParsedNodeId) -> ua.NodeId:
        index = parsed.namespace_index if parsed.namespace_uri is None else self.namespace(parsed.namespace_uri)
        return ua.NodeId.from_string(parsed.with_index(index or 0))

    async def with_root(self, text: str, target: Target) -> "Resolver":
        """This resolver with relative paths starting at `target` (the device's node_root)."""
        found, failed = await self.resolve({"root": target})
        if "root" in failed:
            raise Unresolved(f"node_root {text}: {failed['root']}")
        if isinstance(target, ParsedNodeId):
            # A node id resolves without asking the server: ask, or every relative path would
            # fail as "node_root has no child ..." when it is the root that is missing.
            try:
                await self.client.get_node(found["root"]).read_browse_name()
            except ua.UaStatusCodeError as err:
                raise Unresolved(f"node_root {text}: the server has no such node "
                                 f"({ua.StatusCode(err.code).name})") from None
        return Resolver(self.client, self.namespaces, max_per_call=self.max_per_call,
                        root=found["root"], root_text=text)

    async def resolve(self, targets: Mapping[K, Target]) -> tuple[dict[K, ua.NodeId], dict[K, str]]:
        """Node ids of those that resolved, and why each of the others did not."""
        found: dict[K, ua.NodeId] = {}
        failed: dict[K, str] = {}
        paths: dict[K, ua.BrowsePath] = {}
        for key, target in targets.items():
            try:
                if isinstance(target, ParsedNodeId):
                    found[key] = self.node_id(target)
                else:
                    paths[key] = self._browse_path(target)
            except Unresolved as err:
                failed[key] = str(err)
        if not paths:
            return found, failed
        results = await self._translate(list(paths.values()))
        for (key, bpath), result in zip(paths.items(), results):
            node = _target_of(result)
            if node is not None:
                found[key] = node
            else:
                target = targets[key]
                assert isinstance(target, BrowsePath)
                failed[key] = await self._why(target, result)
        return found, failed

    def _start(self, path: BrowsePath) -> ua.NodeId:
        if path.absolute:
            return ROOT
        if self.root is None:
            raise Unresolved(f"{path} is a relative browse path, but the connection has no node_root")
        return self.root

    def _browse_path(self, path: BrowsePath) -> ua.BrowsePath:
        ns = 0 if path.absolute or self.root is None else self.root.NamespaceIndex
        elements = []
        for seg in path.segments:
            ns = self._index_of(seg, ns)   # a bare name is in the namespace of the one before it
            elements.append(ua.RelativePathElement(
                ReferenceTypeId=_HIERARCHICAL, IsInverse=False, IncludeSubtypes=True,
                TargetName=ua.QualifiedName(seg.name, ns)))
        return ua.BrowsePath(StartingNode=self._start(path), RelativePath=ua.RelativePath(Elements=elements))

    def _index_of(self, seg: Segment, default: int) -> int:
        if seg.namespace_uri is not None:
            return self.namespace(seg.namespace_uri)
        return default if seg.namespace_index is None else seg.namespace_index

    async def _translate(self, paths: list[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        out: list[ua.BrowsePathResult] = []
        for chunk in batches(paths, self.max_per_call):
            out.extend(await self.client.uaclient.translate_browsepaths_to_nodeids(chunk))
        return out

    async def _why(self, path: BrowsePath, result: ua.BrowsePathResult) -> str:
        """'... resolves up to /Objects/2:Plant, not 2:Machine9': the prefixes are translated
        in one call to find the longest that still exists."""
        start = "the Root folder" if path.absolute else f"node_root {self.root_text}"
        code = result.StatusCode.name if result.StatusCode is not None else "no target"
        prefixes = [self._browse_path(path.prefix(n)) for n in range(1, len(path.segments))]
        found = 0
        for n, res in enumerate(await self._translate(prefixes) if prefixes else [], start=1):
            if _target_of(res) is not None:
                found = n
        missing = path.segments[found]
        if found == 0:
            return f"browse path {path}: {start} has no child {missing} ({code})"
        return (f"browse path {path}: resolves up to {path.prefix(found)}, which has no child "
                f"{missing} ({code})")


def _target_of(result: ua.BrowsePathResult) -> ua.NodeId | None:
    if result.StatusCode is not None and not result.StatusCode.is_good():
        return None
    for target in result.Targets or ():
        local = local_node_id(target.TargetId)
        if local is not None:
            return local
    return None


def local_node_id(tid: ua.NodeId) -> ua.NodeId | None:
    """An ExpandedNodeId as a NodeId of this server; None for one on another server."""
    if getattr(tid, "NamespaceUri", None) or getattr(tid, "ServerIndex", 0):
        return None
    return ua.NodeId(tid.Identifier, tid.NamespaceIndex, tid.NodeIdType)
