"""Service protection limits (per client, sliding window) and injected faults."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUESTS_CODE = "0x80072322"
EXECUTION_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"


@dataclass
class Limits:
    requests: int = 6000
    window_seconds: float = 300.0
    concurrency: int = 52
    execution_ms: int = 1_200_000

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "window_seconds": self.window_seconds,
            "concurrency": self.concurrency,
            "execution_ms": self.execution_ms,
        }


@dataclass
class Throttled:
    code: str
    message: str
    retry_after: int


@dataclass
class _ClientState:
    requests: deque = field(default_factory=deque)  # timestamps
    executions: deque = field(default_factory=deque)  # (timestamp, ms)
    execution_total: float = 0.0
    active: int = 0


class ServiceProtection:
    """Evaluates Dataverse's three service protection limits per client (token subject)."""

    def __init__(self, clock: Callable[[], float], limits: Limits | None = None) -> None:
        self.clock = clock
        self.limits = limits or Limits()
        self.lock = threading.Lock()
        self._clients: dict[str, _ClientState] = {}

    def configure(self, **changes: Any) -> Limits:
        with self.lock:
            for key, value in changes.items():
                if value is None:
                    continue
                if not hasattr(self.limits, key):
                    raise ValueError(f"unknown limit {key!r}")
                current = getattr(self.limits, key)
                setattr(self.limits, key, type(current)(value))
            return self.limits

    def reset(self, limits: Limits | None = None) -> None:
        with self.lock:
            self._clients.clear()
            if limits is not None:
                self.limits = limits

    def _prune(self, state: _ClientState, now: float) -> None:
        window = self.limits.window_seconds
        while state.requests and state.requests[0] <= now - window:
            state.requests.popleft()
        while state.executions and state.executions[0][0] <= now - window:
            _, ms = state.executions.popleft()
            state.execution_total -= ms

    def enter(self, client: str) -> Throttled | None:
        """Call before serving a request; returns a Throttled verdict or None (then call
        ``leave`` when done)."""
        now = self.clock()
        limits = self.limits
        with self.lock:
            state = self._clients.setdefault(client, _ClientState())
            self._prune(state, now)
            if state.active >= limits.concurrency:
                return Throttled(
                    CONCURRENCY_CODE,
                    f"Number of concurrent requests exceeded the limit of {limits.concurrency}.",
                    1,
                )
            if len(state.requests) >= limits.requests:
                oldest = state.requests[0]
                retry = max(1, math.ceil(oldest + limits.window_seconds - now))
                return Throttled(
                    REQUESTS_CODE,
                    f"Number of requests exceeded the limit of {limits.requests} over time "
                    f"window of {_fmt_seconds(limits.window_seconds)} seconds.",
                    retry,
                )
            if state.execution_total >= limits.execution_ms:
                oldest = state.executions[0][0] if state.executions else now
                retry = max(1, math.ceil(oldest + limits.window_seconds - now))
                return Throttled(
                    EXECUTION_CODE,
                    "Combined execution time of incoming requests exceeded limit of "
                    f"{limits.execution_ms:,} milliseconds over time window of "
                    f"{_fmt_seconds(limits.window_seconds)} seconds. Decrease number of "
                    "concurrent requests or reduce the duration of requests and try again later.",
                    retry,
                )
            state.requests.append(now)
            state.active += 1
            return None

    def leave(self, client: str, elapsed_ms: float) -> None:
        now = self.clock()
        with self.lock:
            state = self._clients.setdefault(client, _ClientState())
            state.active = max(0, state.active - 1)
            state.executions.append((now, elapsed_ms))
            state.execution_total += elapsed_ms

    def remaining(self, client: str) -> tuple[int, int]:
        """(requests remaining, execution ms remaining) in the current window."""
        now = self.clock()
        with self.lock:
            state = self._clients.get(client)
            if state is None:
                return self.limits.requests, self.limits.execution_ms
            self._prune(state, now)
            return (
                max(0, self.limits.requests - len(state.requests)),
                max(0, int(self.limits.execution_ms - state.execution_total)),
            )


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


FAULT_KINDS = {
    "status",
    "reset",
    "slow",
    "truncated",
    "malformed",
    "redirect",
    "discovery_elsewhere",
    "tenant_not_found",
    "app_disabled",
    "user_disabled",
    "id_token",
    "refuse",
    "untrusted_certificate",
}
# Kinds that only make sense for the Entra endpoints: they default to target "entra".
ENTRA_ONLY_KINDS = {
    "discovery_elsewhere",
    "tenant_not_found",
    "app_disabled",
    "user_disabled",
    "id_token",
}
# The fields an "id_token" fault accepts (anything else is refused, so a typo in a claim
# override's envelope cannot pass silently).
ID_TOKEN_FIELDS = {"kind", "count", "times", "target", "path_contains", "claims", "signature"}
SIGNATURES = {"foreign"}
# Kinds applied when a TCP connection is accepted, before any request (and whatever it is
# for): "target" and "path_contains" mean nothing there.
CONNECTION_KINDS = {"refuse", "untrusted_certificate"}
TARGETS = {"webapi", "entra"}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass
class Fault:
    kind: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    seconds: float = 1.0
    path_contains: str | None = None
    target: str = "webapi"  # webapi, entra, or connection (for CONNECTION_KINDS)
    location: str | None = None  # redirect: None = the simulator under the name localhost
    token_endpoint: str | None = None  # discovery_elsewhere: None = the same, via localhost
    claims: dict[str, Any] | None = None  # id_token: claim overrides (None removes a claim)
    signature: str | None = None  # id_token: "foreign" = signed by a key not in the JWKS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        count = _count(data)
        claims, signature = _id_token_options(kind, data)
        retry_after = data.get("retry_after")
        return cls(
            kind=kind,
            count=count,
            status=_status(kind, data.get("status")),
            retry_after=None if retry_after is None else _int(retry_after, "retry_after"),
            seconds=float(data.get("seconds", 1.0)),
            path_contains=None if kind in CONNECTION_KINDS else data.get("path_contains"),
            target=_target(kind, data.get("target")),
            location=_optional_str(data, "location"),
            token_endpoint=_optional_str(data, "token_endpoint"),
            claims=claims,
            signature=signature,
        )

    def as_dict(self) -> dict[str, Any]:
        result = {
            "kind": self.kind,
            "count": self.count,
            "status": self.status,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "path_contains": self.path_contains,
            "target": self.target,
            "location": self.location,
            "token_endpoint": self.token_endpoint,
        }
        if self.kind == "id_token":
            result.update(claims=self.claims, signature=self.signature)
        return result


def _count(data: dict[str, Any]) -> int:
    """``count``, or its synonym ``times`` (1 when neither is given)."""
    count, times = data.get("count"), data.get("times")
    if count is not None and times is not None and count != times:
        raise ValueError("give count or times (the same thing), not both")
    name = "count" if times is None else "times"
    raw = count if times is None else times
    value = 1 if raw is None else _int(raw, name)
    if value < 1:
        raise ValueError(f"{name} must be at least 1")
    return value


def _id_token_options(kind: str, data: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Check an ``id_token`` fault's fields; other kinds must not carry them."""
    if kind != "id_token":
        for name in ("claims", "signature"):
            if data.get(name) is not None:
                raise ValueError(f"{name} applies to fault kind 'id_token' only")
        return None, None
    unknown = sorted(set(data) - ID_TOKEN_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {unknown} for fault kind 'id_token'; expected some of "
            f"{sorted(ID_TOKEN_FIELDS)}"
        )
    claims = data.get("claims")
    if claims is not None and not isinstance(claims, dict):
        raise ValueError(
            'claims must be a JSON object of claim names to values, e.g. {"iss": "..."} '
            "(null removes a claim)"
        )
    if claims is not None and not all(isinstance(k, str) and k for k in claims):
        raise ValueError("claim names must be non-empty strings")
    signature = data.get("signature")
    if signature is not None and not (isinstance(signature, str) and signature in SIGNATURES):
        raise ValueError(f"signature must be {sorted(SIGNATURES)} (or absent), not {signature!r}")
    if not claims and signature is None:
        raise ValueError('an id_token fault needs claims to change or "signature": "foreign"')
    return dict(claims or {}), signature


def _int(value: Any, name: str) -> int:
    # int(float("inf")) raises OverflowError, which the control API would report as a 500
    try:
        return int(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number") from None


def _status(kind: str, value: Any) -> int:
    if kind == "redirect":
        status = _int(307 if value is None else value, "status")
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"a redirect status must be one of {sorted(REDIRECT_STATUSES)}")
        return status
    status = _int((429 if kind == "status" else 503) if value is None else value, "status")
    if kind == "status" and not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    return status


def _target(kind: str, value: Any) -> str:
    if value is not None and value not in TARGETS:
        raise ValueError(f"unknown fault target {value!r}; expected one of {sorted(TARGETS)}")
    if kind in CONNECTION_KINDS:
        return "connection"
    if kind in ENTRA_ONLY_KINDS:
        if value == "webapi":
            raise ValueError(f"fault kind {kind!r} applies to target 'entra' only")
        return "entra"
    return value or "webapi"


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


class FaultQueue:
    """Faults applied, in order, to the next matching requests of their target (the Web API,
    the Entra endpoints, or new TCP connections)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def take(
        self,
        path: str,
        target: str = "webapi",
        fits: Callable[[Fault], bool] | None = None,
    ) -> Fault | None:
        """The first pending fault for ``target`` whose ``path_contains`` is in ``path`` and
        that ``fits`` the request (some kinds only concern some endpoints); one use of it is
        consumed."""
        with self.lock:
            for fault in self.faults:
                if fault.target != target:
                    continue
                if fault.path_contains and fault.path_contains not in path:
                    continue
                if fits is not None and not fits(fault):
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f.as_dict() for f in self.faults]
