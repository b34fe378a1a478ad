"""How long and how often one run may wait and try again, shared by everything it sends:
the Dataverse Web API and Entra ID's token endpoint draw on the same budget.

Every wait has a floor, so that `Retry-After: 0` can't turn into a busy loop, and a run
has a cap on its waits as well as on the seconds it spends throttled.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings

logger = logging.getLogger(__name__)

# Seconds to wait on a 429 that doesn't say how long.
DEFAULT_THROTTLE_WAIT = 5.0


class RetryBudget:
    def __init__(
        self,
        *,
        max_retries: int = 4,
        backoff_seconds: float = 1.0,
        max_throttle_wait: float = 300.0,
        max_waits: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.max_retries = max_retries  # per request, after a network error or a 5xx
        self.backoff_seconds = backoff_seconds  # the first backoff, and the floor of any wait
        self.max_throttle_wait = max_throttle_wait  # seconds throttled, in all
        self.max_waits = max_waits  # waits of any kind, in all
        self.sleep = sleep
        self.waits = 0
        self.throttle_wait_seconds = 0.0
        # Told the seconds of each throttle wait before it starts, and None once it ends
        # (a run shows it on its page); may be called from the fetching or mapping thread.
        self.on_throttle: Callable[[float | None], None] | None = None

    def backoff(self, attempt: int, why: str) -> bool:
        """Wait before retry number `attempt` (from 1) after a transient failure; False,
        without waiting, if the request or the run has no retry left."""
        if attempt > self.max_retries or self.waits >= self.max_waits:
            return False
        delay = min(30.0, self.backoff_seconds * 2 ** (attempt - 1)) * (0.5 + random.random())
        logger.info(
            "%s; retrying in %.1f s (attempt %d of %d)", why, delay, attempt, self.max_retries
        )
        self.waits += 1
        self.sleep(delay)
        return True

    def throttled(self, retry_after: float | None, why: str) -> bool:
        """Wait as long as a 429's Retry-After asks (at least the backoff); False, without
        waiting, if that would go past the run's budget."""
        wait = max(
            self.backoff_seconds, DEFAULT_THROTTLE_WAIT if retry_after is None else retry_after
        )
        if self.throttle_wait_seconds + wait > self.max_throttle_wait or (
            self.waits >= self.max_waits
        ):
            return False
        logger.info("%s; waiting %.1f s as Retry-After asks", why, wait)
        self.waits += 1
        self.throttle_wait_seconds += wait
        self._tell(wait)
        try:
            self.sleep(wait)
        finally:
            self._tell(None)
        return True

    def _tell(self, wait: float | None) -> None:
        # What is only shown must never change how the run waits or ends.
        if self.on_throttle is None:
            return
        try:
            self.on_throttle(wait)
        except Exception:
            logger.warning("Could not show a throttle wait", exc_info=True)

    def limit_reached(self) -> str:
        """Which of the run's limits stopped the waiting, in words."""
        if self.waits >= self.max_waits:
            return f"after {self.waits} waits"
        return f"beyond {self.max_throttle_wait:.0f} seconds of waiting"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def budget_from_settings(**overrides) -> RetryBudget:
    """A run's budget as the operator configured it; `overrides` for interactive pages,
    which can't wait as long as a background sync."""
    options = {
        "backoff_seconds": settings.LEARNEXA_DYNAMICS_BACKOFF_SECONDS,
        "max_throttle_wait": settings.LEARNEXA_DYNAMICS_MAX_THROTTLE_WAIT,
        **overrides,
    }
    return RetryBudget(**options)
