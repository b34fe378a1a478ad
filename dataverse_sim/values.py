"""Value formats shared by the generator and the store: Dataverse timestamps, GUIDs and
full names."""

from __future__ import annotations

import hashlib
import random
import time
import uuid

_DAYS: dict[int, str] = {}
_TIMES: list[str] = []


def iso(ts: float) -> str:
    """UTC timestamp as Dataverse writes it: 2017-01-13T01:52:51Z (whole seconds)."""
    day, rest = divmod(int(ts), 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    if not _TIMES:
        _TIMES.extend(
            f"{h:02d}:{m:02d}:{sec:02d}Z" for h in range(24) for m in range(60) for sec in range(60)
        )
    return prefix + _TIMES[rest]


def seeded_uuid(seed: int, label: str) -> str:
    """A version-4 GUID derived from the seed and a label (the same for every run)."""
    digest = hashlib.sha256(f"dataverse_sim:{seed}:{label}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def random_guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from ``rng``."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def full_name(first: str | None, last: str | None) -> str | None:
    """``fullname`` as Dataverse composes it from first and last name."""
    parts = [p for p in (first, last) if p]
    return " ".join(parts) if parts else None
