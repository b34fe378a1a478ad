"""Microsoft sign-ins in progress, kept in the browser's session under their state: each
waits ten minutes at most and is taken once, whatever the outcome (django-allauth's
statekit does the same)."""

from __future__ import annotations

import time

TTL_SECONDS = 600
# Each tab that started a sign-in may still finish it; the oldest beyond these are dropped.
MAX_PENDING = 5


class Expired(Exception):
    """The state is one this browser started, more than ten minutes ago."""


class FlowStates:
    def __init__(self, session_key: str):
        self.session_key = session_key

    def _live(self, request) -> dict:
        now = time.time()
        stash = request.session.get(self.session_key) or {}
        return {
            state: entry
            for state, entry in stash.items()
            if isinstance(entry, dict) and now - entry.get("started", 0) <= TTL_SECONDS
        }

    def keep(self, request, state: str, entry: dict) -> None:
        pending = self._live(request)
        for old in sorted(pending, key=lambda s: pending[s]["started"])[: -(MAX_PENDING - 1)]:
            del pending[old]
        pending[state] = {**entry, "started": time.time()}
        request.session[self.session_key] = pending

    def knows(self, request, state: str) -> bool:
        """Whether this browser started `state` (even if it has expired since)."""
        return bool(state) and state in (request.session.get(self.session_key) or {})

    def take(self, request, state: str) -> dict | None:
        """The sign-in started under `state`, removed from the session; None if there is none;
        Expired if it is too old."""
        started_here = self.knows(request, state)
        pending = self._live(request)
        entry = pending.pop(state, None) if state else None
        request.session[self.session_key] = pending
        if entry is None and started_here:
            raise Expired(state)
        return entry
