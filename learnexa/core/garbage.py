"""CPython's cyclic garbage collector during a long bulk run.

A sync keeps a few pages of records alive (hundreds of thousands of objects) and allocates as
many again for every page. The collector, triggered by allocation counts, traverses them over
and over while almost none of them is garbage (a page's objects are freed by reference
counting when it is done): a tenth of a first sync's time, and each pass stops both threads.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def collected_per_page() -> Iterator[Callable[[], None]]:
    """Switch automatic collection off and yield the function to call after each page,
    which now and then collects the young objects, so that each is traversed at most once.
    The objects that existed before are frozen out of the way until the end.

    Where collection is already off (a caller of ours, or another run in this process),
    it is left as it is and the per-page call does nothing.
    """
    if not gc.isenabled():
        yield _nothing
        return
    pages = 0

    def collect() -> None:
        # Not after every page: a collection traverses what is still alive, and most of
        # what the pages since the last one made is freed by then.
        nonlocal pages
        pages += 1
        if pages % PAGES_PER_COLLECTION == 0:
            gc.collect(1)

    gc.freeze()
    gc.disable()
    try:
        yield collect
    finally:
        gc.enable()
        gc.unfreeze()


PAGES_PER_COLLECTION = 8


def _nothing() -> None:
    pass
