"""Read the next chunk while the current one is analysed.

Reading a store chunk is mostly zlib decompression and SQLite paging, analysis is mostly numpy:
both release the GIL, so on two cores a background reader turns read + analyse into roughly
max(read, analyse). At most `depth` chunks wait in the queue, so memory stays bounded at
`depth + 1` chunks in flight (chunk size is VerifyConfig.chunk_devices).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate `source` in a background thread, `depth` items ahead; re-raises its errors."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(_Failed(exc))

    worker = threading.Thread(target=produce, name="verifier-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        # The consumer stopped early (an error in analysis): let the reader thread end.
        stop.set()
        worker.join(timeout=5)
