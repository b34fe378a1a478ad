"""Heartbeats: each worker and scheduler keeps a row saying it is alive (ops.Heartbeat).

A worker beats from a background thread every LEARNEXA_HEARTBEAT_SECONDS, whatever its
jobs are doing; a scheduler beats on each loop, so a stuck loop shows as gone. A clean exit
removes the row; a killed process leaves it behind, and `learnexa status` reports it gone
once it has not been seen for three intervals.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger(__name__)

# Rows of processes gone for longer than this are deleted when another process starts.
FORGET_AFTER = timedelta(days=1)


class Beat:
    """This process's heartbeat row."""

    def __init__(self, kind: str, interval: float):
        from .models import Heartbeat

        self.model = Heartbeat
        self.kind = kind
        self.interval = float(interval)
        self.hostname = socket.gethostname()[:255]
        self.pid = os.getpid()

    def start(self) -> None:
        now = timezone.now()
        self.model.objects.filter(last_seen_at__lt=now - FORGET_AFTER).delete()
        # A row left by a killed process whose pid this one now has is replaced.
        self.model.objects.update_or_create(
            kind=self.kind,
            hostname=self.hostname,
            pid=self.pid,
            defaults={"started_at": now, "last_seen_at": now, "interval": self.interval},
        )

    def touch(self) -> None:
        """Say this process is alive; never raises (a database that is down for a moment
        must not stop the process: its row just goes stale)."""
        try:
            now = timezone.now()
            updated = self.model.objects.filter(
                kind=self.kind, hostname=self.hostname, pid=self.pid
            ).update(last_seen_at=now, interval=self.interval)
            if not updated:  # removed (by `status --forget`, or after a long outage)
                self.start()
        except DatabaseError as exc:
            logger.warning("Could not record the %s's heartbeat: %s", self.kind, exc)
            connection.close_if_unusable_or_obsolete()

    def stop(self) -> None:
        try:
            self.model.objects.filter(kind=self.kind, hostname=self.hostname, pid=self.pid).delete()
        except DatabaseError as exc:
            logger.warning("Could not remove the %s's heartbeat: %s", self.kind, exc)


def worker_interval() -> float:
    return float(getattr(settings, "LEARNEXA_HEARTBEAT_SECONDS", 15))


@contextmanager
def beating(kind: str, interval: float | None = None) -> Iterator[Beat]:
    """Keep this process's heartbeat from a background thread while the block runs; remove
    it when the block ends (a clean exit, SystemExit included)."""
    beat = Beat(kind, interval or worker_interval())
    beat.start()
    stopped = threading.Event()

    def run() -> None:
        try:
            while not stopped.wait(beat.interval):
                close_old_connections()
                beat.touch()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=f"{kind}-heartbeat", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        stopped.set()
        thread.join(timeout=5)
        beat.stop()


@contextmanager
def for_worker(options: dict) -> Iterator[Beat | None]:
    """The heartbeat of `learnexa worker`, from the command's options. With --reload, only
    the child process that runs the jobs beats, not the one that restarts it."""
    from django.utils.autoreload import DJANGO_AUTORELOAD_ENV

    if (
        options.get("reload")
        and not options.get("batch")
        and os.environ.get(DJANGO_AUTORELOAD_ENV) != "true"
    ):
        yield None
        return
    with beating("worker") as beat:
        yield beat


@contextmanager
def for_scheduler(interval: float, *, loop: bool) -> Iterator[Callable[[], None]]:
    """The heartbeat of `learnexa scheduler --loop`: call what it yields on each loop. A
    single run (from cron) keeps none."""
    if not loop:
        yield lambda: None
        return
    beat = Beat("scheduler", interval)
    beat.start()
    try:
        yield beat.touch
    finally:
        beat.stop()
