"""`learnexa status`: is it running? For an operator, from any machine sharing the database."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from learnexa.ops import state


class Command(BaseCommand):
    help = (
        "Show the live workers and schedulers (and those gone: killed, or hung), the job "
        "queue, the syncs running now, and the companies whose last sync failed or whose "
        "schedule is paused."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options):
        report = collect()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(render(report))


def collect() -> dict:
    now = timezone.now()
    processes = state.processes(now)
    return {
        "time": now.isoformat(),
        "workers": [p for p in processes if p["kind"] == "worker"],
        "schedulers": [p for p in processes if p["kind"] == "scheduler"],
        "live": {
            kind: sum(1 for p in processes if p["kind"] == kind and p["state"] == "live")
            for kind in ("worker", "scheduler")
        },
        "queue": state.queue(now),
        "runs_in_progress": state.runs_in_progress(),
        "companies_needing_attention": state.companies_needing_attention(),
    }


def render(report: dict) -> str:
    lines = []
    for kind in ("workers", "schedulers"):
        rows = report[kind]
        live = sum(1 for p in rows if p["state"] == "live")
        lines.append(
            f"{kind.capitalize()}: {live} live"
            + (f", {len(rows) - live} gone" if len(rows) > live else "")
        )
        for p in rows:
            lines.append(
                f"  {p['state']:<4}  {p['hostname']}:{p['pid']}  since {p['started_at']}, "
                f"last seen {p['last_seen_seconds_ago']:.0f}s ago (every {p['interval']:g}s)"
            )
        if kind == "schedulers" and not rows:
            lines.append("  (none running with --loop)")
    queue = report["queue"]
    lines.append(
        f"Queue: {queue['depth']} job(s) waiting"
        + (f", the oldest for {queue['oldest_age_seconds']:.0f}s" if queue["depth"] else "")
        + (f"; {queue['scheduled_later']} scheduled later" if queue["scheduled_later"] else "")
    )
    runs = report["runs_in_progress"]
    lines.append(f"Syncs running: {len(runs)}")
    for run in runs:
        lines.append(
            f"  run {run['run']}  {run['company']}  {run['mode']}  since {run['started_at']}  "
            f"{run['pages']} page(s), {run['records']} record(s)"
        )
    attention = report["companies_needing_attention"]
    lines.append(f"Companies needing attention: {len(attention)}")
    for company in attention:
        why = []
        if company["last_run_failed"]:
            why.append(f"last sync failed ({company['consecutive_failures']} in a row)")
        if company["schedule_paused"]:
            why.append("schedule paused")
        lines.append(f"  {company['company']}: {', '.join(why)}")
        if company["last_error"]:
            lines.append(f"    {company['last_error']}")
    return "\n".join(lines)
