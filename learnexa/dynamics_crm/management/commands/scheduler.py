import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from learnexa.dynamics_crm.schedule import tick
from learnexa.ops import heartbeat


class Command(BaseCommand):
    help = (
        "Queue the syncs that are due, and resume syncs whose worker died. Run it with "
        "--loop as a service, or once a minute from cron; several copies may run at once "
        "(each due company is claimed by exactly one)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop", action="store_true", help="Keep running, checking every --interval seconds."
        )
        parser.add_argument(
            "--interval", type=float, default=30.0, help="Seconds between checks (default 30)."
        )

    def handle(self, *args, loop: bool, interval: float, **options):
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        # With --loop, a heartbeat row (`learnexa status`, /metrics), beaten on each loop.
        with heartbeat.for_scheduler(interval, loop=loop) as beat:
            while True:
                beat()
                done = tick()
                if done["enqueued"] or done["resumed"] or not loop:
                    self.stdout.write(
                        f"queued {len(done['enqueued'])} sync(s), resumed {len(done['resumed'])}"
                    )
                if not loop or not self.running:
                    return
                try:
                    self._sleep(interval)
                except KeyboardInterrupt:
                    return
                # Drop a connection the database closed while we slept.
                close_old_connections()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running and time.monotonic() < deadline:
            time.sleep(min(0.5, deadline - time.monotonic()))

    def _stop(self, *args):
        self.running = False
