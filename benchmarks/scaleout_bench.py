"""Scale-out benchmark of the background syncs: many companies, several workers.

    uv run python benchmarks/scaleout_bench.py [--companies 200] [--users 1000] [--workers 4]
                                               [--huge 50000] [--database postgres|sqlite]
                                               [--sim-processes 2] [--json]

One scenario:

  1. a fresh database (a new PostgreSQL database, or SQLite in a temporary folder), migrated,
     with `--companies` companies, each connected to its own simulated Dynamics 365
     organization of `--users` users (each with its own seed, so its own people);
  2. N `learnexa worker` processes started (`python -m learnexa.cli worker --interval 0.2
     --no-startup-delay`) and waited for until each is polling the queue;
  3. one sync per company queued with `learnexa.dynamics_crm.jobs.enqueue_sync`, as the
     Integration page's "Sync now" does, all at once;
  4. waited on until every run has finished; then from the runs' own timestamps: the wall
     time (first queued → last finished), users synced per second, runs per second, the
     queue wait (queued_at → started_at) p50/p95/max, and the checks: exactly one run per
     company, none failed, and no two runs of a company overlapping in time.

With `--huge N` a second scenario follows on a fresh database: one extra company of N users
queued first, then the small ones; it shows how long a large company makes the small ones
wait (the queue is first in, first out, so one worker is busy with the large one while the
others go through the small ones).

How the simulated organizations are served. A `python -m dataverse_sim` process per company
would be 200 Python processes (~60 MB each, 12 GB in all, and 200 interpreters starting on 2
cores); one simulator of 200,000 users would be one organization, not 200. Instead each
simulator host process (`--sim-processes`, 2 by default: one per core) runs many
`dataverse_sim.server.Simulator` objects side by side, each a complete organization and
Entra ID tenant with its own port, seed, users, tenant, client id and secret; they share one
CA and signing key (generated once, so the product trusts one CA file). Measured on the
2-core machine: a 1,000-user simulator costs ~0.24 s of CPU to generate and start and ~0.7 MB
of memory, and 100 idle simulators in one process use ~1 % of a core, so 200 of them start in
~25 s over two processes and then cost nothing while they wait. At most `--workers` of them
are busy at a time (one per running sync), so two host processes are enough to serve four
syncs without the simulator becoming the bottleneck; more processes would only take CPU from
the workers. Service protection is lifted on every simulator: the benchmark measures the
workers, not waiting on Retry-After.

Everything started is stopped, and the databases dropped, on exit, Ctrl-C, SIGTERM and errors;
every wait is bounded (`--timeout` per scenario).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from sync_bench import ROOT, Bench, _die_with_parent

SMALL_PREFIX = "small-"
HUGE_SLUG = "huge"
WORKER_READY = "Starting worker"


# -- children ------------------------------------------------------------------------------


def child_sim_host(args) -> None:
    """Serve several simulated organizations from this one process until SIGTERM."""
    from dataverse_sim.server import Simulator

    specs = json.loads(Path(args.spec_file).read_text())
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    simulators = []
    try:
        for spec in specs:
            sim = Simulator(
                users=spec["users"], seed=spec["seed"], port=0, state_dir=args.state_dir
            )
            sim.start()
            sim.set_limits(requests=10**9, concurrency=1000, execution_ms=10**12)
            simulators.append((spec, sim))
            if stop:
                return
        infos = [{**spec, **sim.info} for spec, sim in simulators]
        tmp = Path(args.result_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(infos))
        tmp.replace(args.result_file)
        while not stop:
            time.sleep(0.2)
    finally:
        for _, sim in simulators:
            with contextlib.suppress(Exception):
                sim.stop()


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
    import django

    django.setup()


def child_setup(args) -> None:
    """Migrate; create the companies and connect each to its simulated organization."""
    _django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction

    from learnexa.accounts.models import Company
    from learnexa.demo.simulator import connect_company
    from learnexa.dynamics_crm.models import DynamicsCrmSetting

    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    call_command("migrate", verbosity=0, interactive=False)
    organizations = json.loads(Path(args.spec_file).read_text())
    with transaction.atomic():
        for org in organizations:
            company = Company.objects.create(slug=org["slug"], name=org["slug"])
            connect_company(company, org, sync_frequency=DynamicsCrmSetting.Frequency.OFF)
    Path(args.result_file).write_text(json.dumps({"companies": len(organizations)}))


def child_enqueue_and_wait(args) -> None:
    """Queue one sync per company, in the given order; wait until every run has finished;
    write every run's timestamps and outcome."""
    _django()
    from learnexa.dynamics_crm.jobs import enqueue_sync
    from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

    order = json.loads(Path(args.spec_file).read_text())
    settings_by_slug = {
        s.company.slug: s for s in DynamicsCrmSetting.objects.select_related("company")
    }
    started = time.perf_counter()
    for slug in order:
        enqueue_sync(settings_by_slug[slug], SyncRun.Trigger.MANUAL)
    enqueue_seconds = time.perf_counter() - started
    deadline = time.monotonic() + args.timeout
    finished = (SyncRun.Status.SUCCEEDED, SyncRun.Status.FAILED)
    while True:
        pending = SyncRun.objects.exclude(status__in=finished).count()
        if pending == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{pending} runs still unfinished after {args.timeout:.0f} s")
        time.sleep(0.5)
    from django_tasks_db.models import DBTaskResult

    workers = {
        str(pk): ids[-1] if ids else None
        for pk, ids in DBTaskResult.objects.values_list("id", "worker_ids")
    }
    runs = [
        {
            "company": run.company.slug,
            "worker": workers.get(run.task_id),
            "status": run.status,
            "error": run.error,
            "attempt": run.attempt,
            "queued_at": run.queued_at.timestamp(),
            "started_at": run.started_at.timestamp() if run.started_at else None,
            "finished_at": run.finished_at.timestamp() if run.finished_at else None,
            "records": run.records,
            "created": run.created,
            "skipped": run.skipped,
        }
        for run in SyncRun.objects.select_related("company").order_by("queued_at", "id")
    ]
    Path(args.result_file).write_text(
        json.dumps({"enqueue_seconds": enqueue_seconds, "runs": runs})
    )


CHILDREN = {
    "sim-host": child_sim_host,
    "setup": child_setup,
    "enqueue-and-wait": child_enqueue_and_wait,
}


# -- the parent ----------------------------------------------------------------------------


class ScaleoutBench(Bench):
    """Processes and databases of a run; the clean-up and PostgreSQL helpers are the sync
    benchmark's."""

    def __init__(self, args):
        super().__init__(args)
        self.hosts: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.organizations: list[dict] = []
        self.scenario_count = 0
        self.say = (
            (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
        )

    def _spawn(self, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def _child(self, name: str, spec, timeout: float) -> dict:
        spec_file = self.tmp / f"{name}.spec.json"
        result_file = self.tmp / f"{name}.result.json"
        spec_file.write_text(json.dumps(spec))
        argv = [sys.executable, __file__, "--child", name, "--spec-file", str(spec_file)]
        argv += ["--result-file", str(result_file), "--timeout", str(timeout)]
        self.child = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        try:
            code = self.child.wait(timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"the {name} step did not finish in time") from None
        self.child = None
        if code != 0:
            raise SystemExit(f"the {name} step failed (exit status {code})")
        return json.loads(result_file.read_text())

    # -- simulators ---------------------------------------------------------------------

    def start_simulators(self) -> None:
        from dataverse_sim.certs import ensure_key_material

        args = self.args
        state = self.tmp / "simulator"
        keys = ensure_key_material(state, "127.0.0.1")  # one CA for every organization
        specs = [
            {"slug": f"{SMALL_PREFIX}{n:03d}", "users": args.users, "seed": 1000 + n}
            for n in range(args.companies)
        ]
        groups: list[list[dict]] = [[] for _ in range(args.sim_processes)]
        for n, spec in enumerate(specs):
            groups[n % args.sim_processes].append(spec)
        if args.huge:
            # Its own process: generating it takes a while, and serving it should not slow
            # the small ones' simulators.
            groups.append([{"slug": HUGE_SLUG, "users": args.huge, "seed": 7}])
        results = []
        for n, group in enumerate(groups):
            spec_file = self.tmp / f"sim-{n}.spec.json"
            spec_file.write_text(json.dumps(group))
            result = self.tmp / f"sim-{n}.json"
            argv = [sys.executable, __file__, "--child", "sim-host", "--spec-file", str(spec_file)]
            argv += ["--result-file", str(result), "--state-dir", str(state)]
            self.hosts.append(self._spawn(argv, self.tmp / f"sim-{n}.log", env=dict(os.environ)))
            results.append(result)
        total_users = sum(s["users"] for g in groups for s in g)
        deadline = time.monotonic() + 120 + total_users / 2000
        for n, (host, result) in enumerate(zip(self.hosts, results, strict=True)):
            while not result.exists():
                if host.poll() is not None:
                    raise SystemExit(
                        "a simulator host stopped before it was ready:\n"
                        + (self.tmp / f"sim-{n}.log").read_text(errors="replace")[-3000:]
                    )
                if time.monotonic() > deadline:
                    raise SystemExit("the simulators did not start in time")
                time.sleep(0.2)
            self.organizations += json.loads(result.read_text())
        self.info = {"organization_uri": self.organizations[0]["organization_uri"]}
        self.info["ca_bundle"] = str(keys.ca_cert_path)

    # -- databases ----------------------------------------------------------------------

    def new_database(self) -> None:
        """A fresh, empty database for the next scenario (the previous one is dropped)."""
        self.scenario_count += 1
        if self.scenario_count == 1:
            self.prepare_environment()  # the product's environment, and a first database
        elif self.args.database == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            self.pg_database = f"learnexa_bench_{os.getpid()}_{secrets.token_hex(3)}"
            self._pg_admin(f'CREATE DATABASE "{self.pg_database}"')
            self.env["DATABASE_URL"] = f"{self.args.postgres_server}/{self.pg_database}"
        else:
            self.env["LEARNEXA_DATA_DIR"] = str(self.tmp / f"data-{self.scenario_count}")
        # Every simulated organization listens on 127.0.0.1, each on its own port.
        self.env["LEARNEXA_DYNAMICS_ALLOWED_HOSTS"] = "127.0.0.1"

    # -- workers ------------------------------------------------------------------------

    def start_workers(self) -> None:
        argv = [sys.executable, "-m", "learnexa.cli", "worker", "--interval", "0.2"]
        argv.append("--no-startup-delay")
        logs = []
        for n in range(self.args.workers):
            log = self.tmp / f"worker-{self.scenario_count}-{n}.log"
            self.workers.append(self._spawn(argv, log))
            logs.append(log)
        deadline = time.monotonic() + 60
        for worker, log in zip(self.workers, logs, strict=True):
            while WORKER_READY not in log.read_text(errors="replace"):
                if worker.poll() is not None:
                    raise SystemExit(
                        "a worker stopped before it was ready:\n"
                        + log.read_text(errors="replace")[-3000:]
                    )
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not start in time")
                time.sleep(0.1)

    def stop_workers(self) -> None:
        _stop(self.workers)
        self.workers = []

    def cleanup(self) -> None:
        _stop([*self.workers, *self.hosts])
        self.workers, self.hosts = [], []
        super().cleanup()

    # -- one scenario -------------------------------------------------------------------

    def scenario(self, name: str, with_huge: bool) -> dict:
        orgs = [o for o in self.organizations if with_huge or o["slug"] != HUGE_SLUG]
        # The large one first, then the small ones in order.
        orgs.sort(key=lambda o: (o["slug"] != HUGE_SLUG, o["slug"]))
        self.say(f"[{name}] fresh database, {len(orgs)} companies…")
        self.new_database()
        self._child("setup", orgs, timeout=300)
        self.say(f"[{name}] starting {self.args.workers} workers…")
        self.start_workers()
        self.say(f"[{name}] queueing {len(orgs)} syncs and waiting for them…")
        try:
            outcome = self._child(
                "enqueue-and-wait", [o["slug"] for o in orgs], timeout=self.args.timeout
            )
        finally:
            self.stop_workers()
        users = {o["slug"]: o["users"] for o in orgs}
        if self.args.runs_file:
            with open(self.args.runs_file, "a") as out:
                for run in outcome["runs"]:
                    out.write(json.dumps({"scenario": name, **run}) + "\n")
        return summarize(name, outcome, users, self.args)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize(name: str, outcome: dict, users: dict[str, int], args) -> dict:
    runs = outcome["runs"]
    problems = []
    by_company: dict[str, list[dict]] = {}
    for run in runs:
        by_company.setdefault(run["company"], []).append(run)
    if set(by_company) != set(users):
        problems.append(f"runs for {len(by_company)} companies, expected {len(users)}")
    twice = {c: len(r) for c, r in by_company.items() if len(r) != 1}
    if twice:
        problems.append(f"companies with other than one run: {twice}")
    # Runs of one company must not overlap (there should be one, but check the intervals).
    overlapping = []
    for company, company_runs in by_company.items():
        spans = sorted((r["started_at"], r["finished_at"]) for r in company_runs if r["started_at"])
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                overlapping.append(company)
    if overlapping:
        problems.append(f"companies synced twice at the same time: {overlapping}")
    failed = [r for r in runs if r["status"] != "succeeded"]
    if failed:
        problems.append(
            f"{len(failed)} runs did not succeed, e.g. {failed[0]['company']}: {failed[0]['error']}"
        )
    retried = sum(1 for r in runs if r["attempt"] > 1)

    first_queued = min(r["queued_at"] for r in runs)
    last_finished = max(r["finished_at"] or r["queued_at"] for r in runs)
    wall = last_finished - first_queued
    # The most runs in progress at once, from the runs' intervals: at most one per worker.
    events = sorted(
        [(r["started_at"], 1) for r in runs if r["started_at"]]
        + [(r["finished_at"], -1) for r in runs if r["finished_at"]]
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    # A worker runs one job at a time: its runs' intervals must not overlap either.
    by_worker: dict[str, list[tuple]] = {}
    for r in runs:
        if r["started_at"] and r["finished_at"]:
            by_worker.setdefault(r.get("worker") or "?", []).append(
                (r["started_at"], r["finished_at"], r["company"])
            )
    worker_overlaps = []
    for worker, spans in by_worker.items():
        spans.sort()
        for a, b in zip(spans, spans[1:], strict=False):
            if b[0] < a[1]:
                worker_overlaps.append(f"{worker[:6]}: {a[2]} and {b[2]} ({a[1] - b[0]:.2f} s)")
    if peak > args.workers:
        problems.append(
            f"{peak} runs in progress at once with {args.workers} workers; "
            f"overlapping on one worker: {worker_overlaps[:5] or 'none'}"
        )

    def waits(selected):
        return [r["started_at"] - r["queued_at"] for r in selected if r["started_at"]]

    def durations(selected):
        return [r["finished_at"] - r["started_at"] for r in selected if r["finished_at"]]

    small = [r for r in runs if r["company"].startswith(SMALL_PREFIX)]
    huge = [r for r in runs if r["company"] == HUGE_SLUG]
    small_waits, small_durations = waits(small), durations(small)
    row = {
        "scenario": name,
        "database": args.database,
        "workers": args.workers,
        "companies": len(users),
        "users_in_dynamics": sum(users.values()),
        "records_read": sum(r["records"] for r in runs),
        "users_created": sum(r["created"] for r in runs),
        "runs": len(runs),
        "wall_seconds": round(wall, 2),
        "users_per_second": round(sum(r["records"] for r in runs) / wall),
        "runs_per_second": round(len(runs) / wall, 2),
        "enqueue_seconds": round(outcome["enqueue_seconds"], 2),
        "queue_wait_p50": round(percentile(waits(runs), 50), 2),
        "queue_wait_p95": round(percentile(waits(runs), 95), 2),
        "queue_wait_max": round(max(waits(runs)), 2),
        "small_queue_wait_p50": round(percentile(small_waits, 50), 2),
        "small_queue_wait_p95": round(percentile(small_waits, 95), 2),
        "small_queue_wait_max": round(max(small_waits), 2),
        "small_run_seconds_p50": round(percentile(small_durations, 50), 2),
        "small_run_seconds_max": round(max(small_durations), 2),
        "max_concurrent_runs": peak,
        "retried_runs": retried,
        "one_run_per_company": not twice and set(by_company) == set(users),
        "no_overlap": not overlapping,
        "none_failed": not failed,
        "problems": problems,
    }
    if huge:
        row["huge_users"] = users[HUGE_SLUG]
        row["huge_run_seconds"] = round(durations(huge)[0], 2) if durations(huge) else None
        row["huge_queue_wait"] = round(waits(huge)[0], 2) if waits(huge) else None
    return row


def print_row(row: dict) -> None:
    print(
        f"\n{row['scenario']}: {row['database']}, {row['workers']} workers, "
        f"{row['companies']} companies, {row['users_in_dynamics']:,} users in Dynamics"
    )
    print(
        f"  wall {row['wall_seconds']:.1f} s (first queued → last finished; queueing took "
        f"{row['enqueue_seconds']:.1f} s), {row['users_per_second']:,} users/s, "
        f"{row['runs_per_second']:.2f} runs/s, at most {row['max_concurrent_runs']} at once"
    )
    print(
        f"  queue wait, all runs:   p50 {row['queue_wait_p50']:.1f} s, "
        f"p95 {row['queue_wait_p95']:.1f} s, max {row['queue_wait_max']:.1f} s"
    )
    print(
        f"  queue wait, small ones: p50 {row['small_queue_wait_p50']:.1f} s, "
        f"p95 {row['small_queue_wait_p95']:.1f} s, max {row['small_queue_wait_max']:.1f} s; "
        f"a small run takes p50 {row['small_run_seconds_p50']:.2f} s, "
        f"max {row['small_run_seconds_max']:.2f} s"
    )
    if "huge_users" in row:
        print(
            f"  the {row['huge_users']:,}-user company: waited {row['huge_queue_wait']} s, "
            f"ran {row['huge_run_seconds']} s"
        )
    checks = "one run per company, none overlapping, none failed"
    print(
        f"  checks: {'OK — ' + checks if not row['problems'] else '; '.join(row['problems'])}"
        + (f" ({row['retried_runs']} retried)" if row["retried_runs"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=200, help="small companies (200)")
    parser.add_argument("--users", type=int, default=1000, help="users per small company")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument(
        "--huge",
        type=int,
        default=0,
        metavar="N",
        help="also run a scenario with one company of N users queued before the small ones",
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-server",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server (no database name); databases are created and dropped on it",
    )
    parser.add_argument(
        "--sim-processes", type=int, default=2, help="processes serving the small companies"
    )
    parser.add_argument("--page-size", type=int, default=5000, help="records per page (5000)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed per scenario's syncs (900)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument("--runs-file", help="also write every run's timestamps here (JSON lines)")
    # Internal: one step, in a child process.
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        CHILDREN[args.child](args)
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = ScaleoutBench(args)
    rows = []
    try:
        total = args.companies * args.users + args.huge
        bench.say(
            f"starting {args.companies + bool(args.huge)} simulated organizations "
            f"({total:,} users) in {args.sim_processes + bool(args.huge)} processes…"
        )
        started = time.perf_counter()
        bench.start_simulators()
        bench.say(f"  ready in {time.perf_counter() - started:.1f} s")
        scenarios = [("small", False)] + ([("huge_first", True)] if args.huge else [])
        for name, with_huge in scenarios:
            row = bench.scenario(name, with_huge)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print_row(row)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        bench.cleanup()
        sys.exit(130)
    finally:
        bench.cleanup()
    if len(rows) == 2 and not args.json:
        a, b = rows
        print(
            f"\nsmall companies' queue wait p95/max: {a['small_queue_wait_p95']:.1f}/"
            f"{a['small_queue_wait_max']:.1f} s alone, {b['small_queue_wait_p95']:.1f}/"
            f"{b['small_queue_wait_max']:.1f} s behind a {args.huge:,}-user company"
        )
    if any(row["problems"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
