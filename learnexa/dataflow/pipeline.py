"""Overlap waiting on the network with working on the database."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


class Prefetched[T](Iterator[T]):
    """Iterate over `items` while a background thread already produces the next `depth`.

    Made for fetching the next page over HTTP while the current one is written: socket
    reads release the GIL, so the two overlap. At most depth + 1 items are in memory. An
    exception in the producer is raised here, in order. Close it (or use it as a context
    manager) when stopping early: the producer then stops after the item it is working on.
    """

    def __init__(self, items: Iterable[T], *, depth: int = 1, name: str = "prefetch"):
        self._buffer: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = stop = threading.Event()
        self._finished = False
        buffer = self._buffer

        # Not a method: the thread must not keep this object alive.
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

        # The thread runs in the caller's context (contextvars: what its log lines carry).
        self._producer = threading.Thread(
            target=contextvars.copy_context().run, args=(produce,), name=name, daemon=True
        )
        self._producer.start()

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error = self._buffer.get()
        if error is not None:
            self.close()
            raise error
        if item is _DONE:
            self.close()
            raise StopIteration
        # Nothing here keeps a reference once it is returned: the consumer decides where
        # and when the item is freed.
        return item

    def ready(self) -> bool:
        """Whether the next item (or the end, or an error) is already here: asking for it
        won't wait."""
        return self._finished or not self._buffer.empty()

    def close(self) -> None:
        self._finished = True
        self._stop.set()
        if self._producer is not threading.current_thread():
            self._producer.join(timeout=5)

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()
