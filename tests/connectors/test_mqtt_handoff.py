"""paho's thread hands messages to the loop in batches, in order, none left behind."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from connectors.mqtt.handoff import Handoff


async def test_every_item_arrives_in_order_in_fewer_wakeups_than_items():
    got: list[int] = []
    drains = 0

    def consume(items: deque[int]) -> None:
        nonlocal drains
        drains += 1
        for _ in range(min(len(items), 700)):     # a share only: the rest on the next turn
            got.append(items.popleft())

    handoff: Handoff[int] = Handoff(consume)
    handoff.bind(asyncio.get_running_loop())
    n = 20_000

    def produce() -> None:
        for i in range(n):
            handoff.put(i)
            if i % 5000 == 0:
                time.sleep(0.01)    # let the loop catch up now and then: the flag is cleared and set again

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    thread.join()
    await asyncio.sleep(0.05)
    assert got == list(range(n))
    assert drains < n // 10, f"{drains} wake-ups for {n} items"
    assert not handoff.items
