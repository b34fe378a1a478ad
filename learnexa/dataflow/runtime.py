"""CPython's settings while a sync works through pages of records in several threads.

The garbage collector: a sync keeps a few pages of records alive (hundreds of thousands of
objects) and allocates as many again for every page. The collector, triggered by allocation
counts, traverses them over and over while almost none of them is garbage (a page's objects
are freed by reference counting when it is done): a tenth of a first sync's time, and each
pass stops every thread.

The GIL's switch interval: the sync's own thread spends most of its time in the database,
without the GIL, and needs it back for a moment between statements, while the threads that
fetch, map and plan pages hold it. It waits up to the switch interval each time; a shorter
one makes a first sync about 6 % faster.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# What cycles a page leaves (a few dozen small objects: the HTTP exchange's) can wait; a
# collection costs as much whatever it finds, traversing the pages still in flight
# (benchmarks/README.md has the figures).
PAGES_PER_COLLECTION = 32
SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005


@contextmanager
def paged_run() -> Iterator[Callable[[], None]]:
    """Switch automatic collection off, shorten the switch interval, and yield the function
    to call after each page, which now and then collects the young objects, so that each is
    traversed at most once. The objects that existed before are frozen out of the way until
    the end, when everything is set back.

    Where collection is already off (a caller of ours, or another run in this process),
    everything is left as it is and the per-page call does nothing.
    """
    if not gc.isenabled():
        yield _nothing
        return
    pages = 0

    def after_page() -> None:
        # Not after every page: a collection traverses what is still alive, and most of
        # what the pages since the last one made is freed by then.
        nonlocal pages
        pages += 1
        if pages % PAGES_PER_COLLECTION == 0:
            gc.collect(1)

    interval = sys.getswitchinterval()
    gc.freeze()
    gc.disable()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield after_page
    finally:
        sys.setswitchinterval(interval)
        gc.enable()
        gc.unfreeze()


def _nothing() -> None:
    pass
