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
    which collects only the objects made since the last page, so each is traversed about
    once. The objects that existed before are frozen out of the way until the end.

    Where collection is already off (a caller of ours, or another run in this process),
    it is left as it is and the per-page call does nothing.
    """
    if not gc.isenabled() or __import__("os").environ.get("NOGCX"):
        yield _nothing
        return
    gc.freeze()
    gc.disable()
    try:
        yield _collect_young
    finally:
        gc.enable()
        gc.unfreeze()


def _collect_young() -> None:
    gc.collect(1)


def _nothing() -> None:
    pass
