"""Overlap waiting on the network with working on the database."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetched[T](items: Iterable[T], *, depth: int = 1) -> Iterator[T]:
    """Yield `items` while a background thread already produces the next `depth` of them.

    Made for fetching the next page over HTTP while the current one is written: socket
    reads release the GIL, so the two overlap. At most depth + 1 items are in memory. An
    exception in the producer is raised here, in order; when the consumer stops early the
    producer is told to stop after the item it is working on.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed over to the consumer, which re-raises it
            put((None, exc))

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            # Handed over without a reference kept here: the consumer decides where and when
            # it is freed.
            handed = [item]
            del item, error
            yield handed.pop()
    finally:
        stop.set()
        producer.join(timeout=5)
