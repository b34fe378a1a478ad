"""Freshness benchmark: how long a change in Dynamics takes to reach Learnexa's database
through the webhook.

    uv run python benchmarks/freshness_bench.py [--changes 100] [--interval 0.1] [--json]

1. Starts a simulated organization (in this process) and, on a fresh SQLite data folder,
   Learnexa's web app (`gunicorn learnexa.wsgi`, 2 workers, plain HTTP on loopback) and one
   `learnexa worker --interval I`.
2. Connects a company to the organization, runs its first full sync through the worker, and
   registers the webhook automatically (serviceendpoint + Create/Update/Delete steps, as the
   integration page's button does) at the gunicorn address.
3. Makes `--changes` changes one at a time through the simulator's control API (a new first
   name for a synced user) and times each from the control request to the changed row being
   visible in the database (polled every 10 ms).

The path is: the simulator posts within milliseconds, the receiver queues a change-only
sync, the worker notices it at its next poll (`--interval`, the worker's wait between empty
polls of the task table), and the delta sync reads and applies the change. `--json` prints
one object with p50_seconds and p95_seconds (and the rest).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLUG = "fresh"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(predicate, timeout: float, what: str, poll: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def run(args) -> dict:
    from cryptography.fernet import Fernet

    from dataverse_sim.server import Simulator

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    tmp = Path(tempfile.mkdtemp(prefix="freshness-"))
    sim = Simulator(users=args.users, seed=3, port=0, state_dir=tmp / "sim").start()
    info = sim.info
    port = free_port()
    env = {
        **os.environ,
        "LEARNEXA_DATA_DIR": str(tmp / "data"),
        "LEARNEXA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LEARNEXA_DYNAMICS_ALLOWED_HOSTS": info["organization_uri"].removeprefix("https://"),
        "LEARNEXA_DYNAMICS_CA_BUNDLE": info["ca_bundle"],
        "LEARNEXA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LEARNEXA_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "learnexa.settings",
    }
    env.pop("DATABASE_URL", None)  # a fresh SQLite data folder
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from learnexa.accounts.models import Company, User
    from learnexa.demo.simulator import connect_company
    from learnexa.dynamics_crm import webhooks
    from learnexa.dynamics_crm.jobs import enqueue_sync
    from learnexa.dynamics_crm.models import SyncRun, WebhookCounter

    processes: list[subprocess.Popen] = []
    try:
        (tmp / "data").mkdir(parents=True)
        call_command("migrate", verbosity=0, interactive=False)
        company = Company.objects.create(slug=SLUG, name="Fresh")
        setting = connect_company(company, info)
        webhooks.ensure_key(setting)

        say("starting gunicorn and one worker…")
        gunicorn = [sys.executable, "-m", "gunicorn", "learnexa.wsgi", "--workers", "2"]
        gunicorn += ["--bind", f"127.0.0.1:{port}", "--timeout", "60"]
        processes.append(spawn(gunicorn, tmp / "gunicorn.log", env))
        worker = [sys.executable, "-m", "learnexa.cli", "worker", "--interval", str(args.interval)]
        processes.append(spawn(worker, tmp / "worker.log", env))

        def web_up():
            if processes[0].poll() is not None:
                raise SystemExit((tmp / "gunicorn.log").read_text(errors="replace")[-3000:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        wait_for(web_up, 60, "gunicorn", poll=0.2)

        say(f"first full sync of {args.users} users…")
        run = enqueue_sync(setting, SyncRun.Trigger.MANUAL, full=True)
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).is_finished, 120, "the first sync", poll=0.2
        )
        run.refresh_from_db()
        if run.status != SyncRun.Status.SUCCEEDED:
            raise SystemExit(f"the first sync failed: {run.error}")

        setting.refresh_from_db()
        address = f"http://127.0.0.1:{port}/dynamics_crm/webhook/{setting.webhook_id}/"
        done = webhooks.register(setting, address)
        say(f"registered the webhook: endpoint {done['endpoint']}, {len(done['steps'])} steps")

        import httpx

        control = httpx.Client(
            base_url=info["control_url"],
            headers={"Authorization": f"Bearer {info['control_token']}"},
            verify=ssl.create_default_context(cafile=info["ca_bundle"]),
        )
        users = list(
            User.objects.filter(company=company, dynamics_systemuser_id__isnull=False)
            .order_by("pk")
            .values_list("pk", "dynamics_systemuser_id")[: args.changes]
        )
        latencies: list[float] = []
        say(f"{len(users)} changes, one at a time…")
        for n, (pk, systemuser_id) in enumerate(users):
            name = f"Fresh{n}"
            started = time.monotonic()
            control.patch(f"/users/{systemuser_id}", json={"firstname": name}).raise_for_status()
            wait_for(
                lambda pk=pk, name=name: User.objects.filter(pk=pk, first_name=name).exists(),
                30,
                f"change {n}",
            )
            latencies.append(time.monotonic() - started)
            connections.close_all()  # see the worker's commits at once
        control.close()
        counter = WebhookCounter.objects.get(setting=setting)
        runs = SyncRun.objects.filter(setting=setting, trigger=webhooks.TRIGGER)
        deliveries = sim.webhooks.delivery_log()
        report = {
            "changes": len(latencies),
            "users": args.users,
            "worker_interval_seconds": args.interval,
            "p50_seconds": round(percentile(latencies, 50), 3),
            "p95_seconds": round(percentile(latencies, 95), 3),
            "max_seconds": round(max(latencies), 3),
            "min_seconds": round(min(latencies), 3),
            "webhook_calls_received": counter.received,
            "webhook_runs": runs.count(),
            "webhook_runs_succeeded": runs.filter(status=SyncRun.Status.SUCCEEDED).count(),
            "deliveries_failed": sum(d["statuscode"] == 31 for d in deliveries),
        }
        say(
            f"p50 {report['p50_seconds']} s, p95 {report['p95_seconds']} s, max "
            f"{report['max_seconds']} s; {report['webhook_runs']} webhook runs"
        )
        return report
    finally:
        stop(processes)
        connections.close_all()
        sim.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--users", type=int, default=250, help="users in the organization")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.1,
        help="the worker's polling interval in seconds (0.1); it bounds the wait before a "
        "queued sync starts",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
