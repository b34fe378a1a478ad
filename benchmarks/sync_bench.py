"""Benchmark of the Dynamics 365 user sync, against the simulated organization.

    uv run python benchmarks/sync_bench.py --users 100000 [--database sqlite|postgres]
                                           [--page-size 5000] [--seed 1] [--json]
                                           [--phases] [--serial] [--profile full.pstats]
                                           [--profile-scenario full|nochange|incremental]
                                           [--latency PER_REQUEST_MS,PER_ROW_MS] [--rounds 1]

One run measures, on the same data:

  full         a full sync into an empty company
  nochange     a re-sync with nothing changed in Dynamics
  incremental  a re-sync after 1 % of the users changed in Dynamics (through the
               simulator's control API)
  floor        (a) every page fetched by a bare httpx loop that only parses the JSON, and
               (b) the same rows written into a scratch copy of the `users` table with the
               database's fastest bulk path (executemany in one transaction on SQLite,
               COPY on PostgreSQL)

--latency 400,0.2 sets the simulator's latency model before anything is timed: every Web
API response then waits 400 ms plus 0.2 ms per record it returns, as a real organization
takes seconds for a page of 5,000 (real figures vary by environment and load). The floor's
fetch then waits the same way, and the report adds each sync's ratio to the floor's fetch
alone: a sync that hides its own work (mapping, matching, writing) behind fetching takes
the fetch's time. It also reads the simulator's request log to say where the full sync's
extra time went: before its first Web API request, in requests the floor does not make,
between page reads (the fetcher idle), and after the last response (the tail).

The simulator runs as a separate process (its CPU and memory are not the sync's). The
database is fresh: SQLite in a temporary folder, or a PostgreSQL database created for the
run and dropped at the end. Everything started is cleaned up, on Ctrl-C and errors too.

How peak memory is measured: every scenario (and the floor) runs in a fresh child process
(this script re-invoking itself with a hidden --scenario argument, against the same
database and simulator), which reads getrusage(RUSAGE_SELF).ru_maxrss when it is done.
ru_maxrss is the kernel's own high-water mark, so no short-lived peak is missed the way a
sampling thread could miss it, and a fresh process per scenario means one scenario's peak
cannot hide behind an earlier, larger one. The figure includes the interpreter and Django
(reported separately as the RSS before the sync started).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import ctypes
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIOS = ("full", "nochange", "incremental")
COMPANY_SLUG = "bench"
FLOOR_TABLE = "bench_floor_users"
CHANGED_FRACTION = 0.01
# The floor's users columns ← systemuser columns (first non-empty), as the sync maps them.
FLOOR_FIELDS = {
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "job_title": ("jobtitle", "title"),
    "phone": ("address1_telephone1", "mobilephone"),
    "city": ("address1_city",),
    "country": ("address1_country",),
    "employee_id": ("employeeid",),
}


# -- helpers shared by the parent and the children ------------------------------------------


def _die_with_parent() -> None:
    """In a child process: be sent SIGTERM if the benchmark dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _peak_rss_mb() -> float:
    # ru_maxrss is in kibibytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _ssl_context(ca_bundle: str):
    import ssl

    return ssl.create_default_context(cafile=ca_bundle)


# -- children: Django in-process ------------------------------------------------------------


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
    import django

    django.setup()


def _company():
    from learnexa.accounts.models import Company

    return Company.objects.get(slug=COMPANY_SLUG)


def child_setup(args, info: dict) -> dict:
    """Migrate the fresh database; create the company and connect it to the simulator."""
    from django.conf import settings
    from django.core.management import call_command

    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    call_command("migrate", verbosity=0, interactive=False)

    from learnexa.accounts.models import Company
    from learnexa.demo.simulator import connect_company

    company = Company.objects.create(slug=COMPANY_SLUG, name="Benchmark")
    connect_company(company, info)
    return {"company": company.pk}


def _install_phase_timers() -> dict[str, float]:
    """Wrap the sync's steps with timers (--phases): seconds spent in each, accumulated.

    Only module attributes are replaced, in this process; the product's code is unchanged.
    The wrappers cost well under a microsecond a call (~0.2 s per 100,000 records).
    """
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import query

    from learnexa.dataflow import bulk
    from learnexa.dynamics_crm import dataverse, mapping, sync
    from learnexa.dynamics_crm.sync import apply, flow, plan

    totals: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - started

        return wrapper

    # Where the sync calls them from: a page's stages through the sync package (see
    # sync.flow.PageFlow), the steps inside them through their stage's module. A step the
    # product no longer has is simply not timed.
    for owner, attribute, name in (
        (mapping.Mapping, "map_page", "map"),
        (sync, "match_page", "match"),
        (sync, "plan_page", "plan"),
        (sync, "prepare_plan", "prepare"),
        (sync, "apply_plan", "apply"),
        (apply, "_insert_users", "apply.insert users"),
        (dataverse.DataverseClient, "get", "fetch"),
        (dataverse.DataverseClient, "_json", "fetch.json"),
        (plan, "_set_unusable_passwords", "plan.unusable_passwords"),
        (bulk.Rows, "insert", "apply.insert rows"),
        (BaseDatabaseWrapper, "commit", "commit"),
    ):
        if hasattr(owner, attribute):
            setattr(owner, attribute, timed(name, getattr(owner, attribute)))

    # What the sync's own thread waits for: the next page (fetched and mapped in the
    # prefetch thread) and the next page's plan (made in the planning thread).
    class TimedPrefetched(flow.Prefetched):
        def __next__(self):
            started = time.perf_counter()
            try:
                return super().__next__()
            finally:
                # The sync's own thread waits for mapped pages; the mapping thread, if the
                # sync has one, for fetched pages.
                thread = threading.current_thread()
                waiting = "next page" if thread is threading.main_thread() else thread.name
                totals[f"wait.{waiting}"] += time.perf_counter() - started

    flow.Prefetched = TimedPrefetched
    result = concurrent.futures.Future.result
    concurrent.futures.Future.result = timed("wait.plan", result)
    bulk_create, bulk_update = query.QuerySet.bulk_create, query.QuerySet.bulk_update

    def timed_bulk(kind, fn):
        def wrapper(self, *args, **kwargs):
            return timed(f"apply.{kind} {self.model._meta.db_table}", fn)(self, *args, **kwargs)

        return wrapper

    query.QuerySet.bulk_create = timed_bulk("bulk_create", bulk_create)
    query.QuerySet.bulk_update = timed_bulk("bulk_update", bulk_update)
    return totals


TABLE_IN_SQL = re.compile(r'(?:INTO|FROM|UPDATE)\s+"(\w+)"')


def child_sync(args, info: dict) -> dict:
    """Run one sync exactly as the product does, and measure it."""
    from django.db import connection

    from learnexa.dynamics_crm.models import SyncRun
    from learnexa.dynamics_crm.sync import execute_run

    company = _company()
    setting = company.dynamics_crm_setting
    run = SyncRun.objects.create(
        setting=setting, company=company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    statements = 0
    phases = _install_phase_timers() if args.phases else None

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        if phases is None:
            return execute(sql, params, many, context)
        # --phases: time in the database driver, by statement kind and table.
        table = TABLE_IN_SQL.search(sql)
        key = f"sql {sql.split(None, 1)[0]} {table.group(1) if table else ''}".rstrip()
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            phases[key] += time.perf_counter() - started

    rss_before = _current_rss_mb()
    profiler = (
        cProfile.Profile() if args.profile and args.scenario == args.profile_scenario else None
    )
    with connection.execute_wrapper(count):
        started_at = time.time()
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        execute_run(run, serial=args.serial)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    if profiler:
        profiler.dump_stats(args.profile)
    if run.status != SyncRun.Status.SUCCEEDED:
        raise SystemExit(f"the {args.scenario} sync failed: {run.error}")
    extra = {"phases": {k: round(v, 3) for k, v in sorted(phases.items())}} if phases else {}
    return {
        **extra,
        "seconds": seconds,
        "started_at": started_at,
        "ended_at": started_at + seconds,
        "cpu_seconds": cpu_seconds,
        "records": run.records,
        "pages": run.pages,
        "requests": run.requests,
        "statements": statements,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
        **{name: getattr(run, name) for name in SyncRun.COUNTERS},
    }


def child_mutate(args, info: dict) -> dict:
    """Change 1 % of the synced users in Dynamics, through the simulator's control API."""
    import httpx

    from learnexa.accounts.models import User

    ids = sorted(
        str(i)
        for i in User.objects.filter(
            company=_company(), dynamics_systemuser_id__isnull=False
        ).values_list("dynamics_systemuser_id", flat=True)
    )
    wanted = max(1, round(args.users * CHANGED_FRACTION))
    # Each round (--rounds) changes other users, to other values.
    rng = random.Random(args.seed if args.round == 1 else f"{args.seed}/{args.round}")
    chosen = rng.sample(ids, min(wanted, len(ids)))
    mark = "" if args.round == 1 else f" r{args.round}"
    # Most get a new job title and city; every tenth is disabled (a deactivation).
    changes = []
    for n, sid in enumerate(chosen):
        if n % 10 == 9:
            changes.append((f"users/{sid}/disable", "POST", {}))
        else:
            body = {
                "jobtitle": f"Benchmark title {n}{mark}",
                "address1_city": f"Bench City {n % 97}{mark}",
            }
            changes.append((f"users/{sid}", "PATCH", body))

    headers = {"Authorization": f"Bearer {info['control_token']}"}
    with httpx.Client(
        verify=_ssl_context(info["ca_bundle"]), headers=headers, timeout=60, trust_env=False
    ) as client:

        def send(change):
            path, method, body = change
            response = client.request(method, f"{info['control_url']}/{path}", json=body)
            response.raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, changes))
    return {"changed": len(changes), "disabled": sum(1 for c in changes if c[1] == "POST")}


def floor_fetch(args, info: dict, *, as_sync: bool = False) -> tuple[float, int, int, list[bytes]]:
    """Every page, fetched and parsed, nothing else. Returns (seconds, records, requests,
    the raw pages, kept as bytes so that they cost the timed loop nothing).

    as_sync: ask for the pages exactly as a full sync does (change tracking; formatted
    values on the first page only, while the sync reads the business units' names beside
    it), which makes the simulator's pages larger and slower to build and read."""
    import httpx

    from learnexa.demo.simulator import app_token
    from learnexa.dynamics_crm.mapping import SYSTEMUSER_COLUMNS

    headers = {  # as the product's client sends them
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
        "If-None-Match": "null",
    }
    with httpx.Client(
        verify=_ssl_context(info["ca_bundle"]), headers=headers, timeout=120, trust_env=False
    ) as client:
        token = app_token(info, client.post)
        prefer = first_prefer = f"odata.maxpagesize={args.page_size}"
        if as_sync:
            from learnexa.dynamics_crm.dataverse import FORMATTED_VALUE

            prefer += ",odata.track-changes"
            first_prefer += f',odata.include-annotations="{FORMATTED_VALUE}",odata.track-changes'
        page_headers = {"Authorization": f"Bearer {token}", "Prefer": first_prefer}
        url = (
            f"{info['organization_uri']}/api/data/v9.2/systemusers"
            f"?$select={','.join(SYSTEMUSER_COLUMNS)}"
        )
        raw_pages: list[bytes] = []
        records = requests = 0
        started = time.perf_counter()
        while url:
            response = client.get(url, headers=page_headers)
            requests += 1
            response.raise_for_status()
            body = response.json()
            records += len(body["value"])
            raw_pages.append(response.content)
            url = body.get("@odata.nextLink")
            page_headers["Prefer"] = prefer
        seconds = time.perf_counter() - started
    return seconds, records, requests, raw_pages


def _floor_rows(raw_pages: list[bytes], company_id: int) -> tuple[list[str], list[tuple]]:
    """The records as rows of the `users` table, prepared for the database (untimed).

    One row per record. Emails must be unique per company, so a missing or repeated email
    is replaced by one made from the systemuserid: the floor writes every record once.
    """
    from django.db import connection
    from django.utils import timezone

    from learnexa.accounts.models import User

    def guid(value):
        try:
            return uuid.UUID(str(value)) if value else None
        except ValueError:
            return None

    now = timezone.now()
    fields = [f for f in User._meta.concrete_fields if not f.primary_key]
    seen: set[str] = set()
    rows: list[tuple] = []
    for raw in raw_pages:
        for record in json.loads(raw)["value"]:
            sid = record["systemuserid"]
            email = (record.get("internalemailaddress") or "")[:254]
            if not email or email.lower() in seen:
                email = f"{sid}@floor.invalid"
            seen.add(email.lower())
            values = {
                "password": "!" + "x" * 40,
                "email": email,
                "is_active": record.get("isdisabled") is not True,
                "created_source": "dynamics_crm",
                "dynamics_systemuser_id": guid(sid),
                "entra_object_id": guid(record.get("azureactivedirectoryobjectid")),
                "created_at": now,
                "updated_at": now,
                "company": company_id,
            }
            for name, columns in FLOOR_FIELDS.items():
                limit = User._meta.get_field(name).max_length
                values[name] = next((record[c] for c in columns if record.get(c)), "")[:limit]
            rows.append(
                tuple(
                    f.get_db_prep_save(
                        values[f.name] if f.name in values else f.get_default(), connection
                    )
                    for f in fields
                )
            )
    return [f.column for f in fields], rows


def _create_floor_table() -> None:
    """A scratch copy of `users`: same columns, same indexes and unique constraints."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f'CREATE TABLE "{FLOOR_TABLE}" (LIKE "users" INCLUDING ALL)')
            return
        cursor.execute(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'users' AND sql IS NOT NULL "
            "ORDER BY type = 'index'"
        )
        for kind, sql in cursor.fetchall():
            if kind == "table":
                sql = sql.replace('"users"', f'"{FLOOR_TABLE}"', 1)
            else:
                sql = re.sub(
                    r'INDEX "?(\w+)"? ON "?users"?',
                    rf'INDEX "{FLOOR_TABLE}_\1" ON "{FLOOR_TABLE}"',
                    sql,
                    count=1,
                )
            cursor.execute(sql)


def floor_write(columns: list[str], rows: list[tuple]) -> float:
    from django.db import connection, transaction

    _create_floor_table()
    names = ", ".join(f'"{c}"' for c in columns)
    try:
        started = time.perf_counter()
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    sql = f'COPY "{FLOOR_TABLE}" ({names}) FROM STDIN'
                    with cursor.cursor.copy(sql) as copy:
                        for row in rows:
                            copy.write_row(row)
            else:
                marks = ", ".join("?" for _ in columns)
                raw = connection.connection.cursor()
                raw.executemany(f'INSERT INTO "{FLOOR_TABLE}" ({names}) VALUES ({marks})', rows)
        return time.perf_counter() - started
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE IF EXISTS "{FLOOR_TABLE}"')


def child_floor(args, info: dict) -> dict:
    started_at = time.time()
    fetch_seconds, records, requests, raw_pages = floor_fetch(args, info)
    columns, rows = _floor_rows(raw_pages, _company().pk)
    del raw_pages
    write_seconds = floor_write(columns, rows)
    as_sync = {}
    if args.latency:  # the same pages, asked for as the sync asks for them
        as_sync_started_at = time.time()
        seconds = floor_fetch(args, info, as_sync=True)[0]
        as_sync = {"fetch_as_sync_seconds": seconds, "as_sync_started_at": as_sync_started_at}
    return {
        **as_sync,
        "started_at": started_at,
        "fetch_seconds": fetch_seconds,
        "write_seconds": write_seconds,
        "records": records,
        "requests": requests,
        "rows_written": len(rows),
        "peak_rss_mb": _peak_rss_mb(),
    }


CHILDREN = {
    "setup": child_setup,
    "floor": child_floor,
    "mutate": child_mutate,
    **dict.fromkeys(SCENARIOS, child_sync),
}


def run_child(args) -> None:
    info = json.loads(Path(args.info_file).read_text())
    _django()
    result = CHILDREN[args.scenario](args, info)
    Path(args.result_file).write_text(json.dumps(result))


# -- the parent: processes, databases, clean-up, report -------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="learnexa-sync-bench-"))
        self.simulator: subprocess.Popen | None = None
        self.child: subprocess.Popen | None = None
        self.pg_database: str | None = None
        self.info: dict = {}
        self.env = dict(os.environ)

    # -- simulator ------------------------------------------------------------------------

    def start_simulator(self) -> None:
        state = self.tmp / "simulator"
        state.mkdir()
        info_file = state / "info.json"
        log = open(self.tmp / "simulator.log", "wb")  # noqa: SIM115 - closed with the process
        # --port 0: the simulator binds a free port itself and reports it in the info file.
        self.simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dataverse_sim",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--users",
                str(self.args.users),
                "--seed",
                str(self.args.seed),
                "--state-dir",
                str(state),
                "--info-file",
                str(info_file),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + 120 + self.args.users / 5000
        while not info_file.exists():
            if self.simulator.poll() is not None:
                raise SystemExit(
                    "the simulator stopped before it was ready:\n"
                    + (self.tmp / "simulator.log").read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                raise SystemExit("the simulator did not start in time")
            time.sleep(0.1)
        self.info = json.loads(info_file.read_text())
        self.info_file = info_file
        # Service protection (requests, execution time per window) would turn a long run into
        # waiting on Retry-After; the benchmark measures the sync, so lift the limits.
        self.control(
            "PUT",
            "throttling",
            {"requests": 10**9, "concurrency": 1000, "execution_ms": 10**12},
        )
        if self.args.latency:
            per_request, per_row = self.args.latency
            self.control("PUT", "latency", {"per_request_ms": per_request, "per_row_ms": per_row})

    def control(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        response = httpx.request(
            method,
            f"{self.info['control_url']}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.info['control_token']}"},
            verify=_ssl_context(self.info["ca_bundle"]),
            trust_env=False,
            timeout=60,
        )
        response.raise_for_status()
        return response.json()

    # -- database -------------------------------------------------------------------------

    def prepare_environment(self) -> None:
        from cryptography.fernet import Fernet

        env = self.env
        host = self.info["organization_uri"].removeprefix("https://")
        (self.tmp / "tmp").mkdir()
        env.update(
            DJANGO_SETTINGS_MODULE="learnexa.settings",
            LEARNEXA_DATA_DIR=str(self.tmp / "data"),
            LEARNEXA_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            LEARNEXA_DYNAMICS_ALLOWED_HOSTS=host,
            LEARNEXA_DYNAMICS_CA_BUNDLE=self.info["ca_bundle"],
            LEARNEXA_DYNAMICS_PAGE_SIZE=str(self.args.page_size),
            LEARNEXA_LOG_LEVEL="WARNING",
            # The product writes a CA bundle for MSAL into the temporary folder: keep it in
            # ours so that it goes when we do.
            TMPDIR=str(self.tmp / "tmp"),
        )
        if self.args.database == "postgres":
            prefix = self.args.postgres_database_prefix
            self.pg_database = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
            self._pg_admin(f'CREATE DATABASE "{self.pg_database}"')
            env["DATABASE_URL"] = f"{self.args.postgres_server}/{self.pg_database}"
        else:
            env.pop("DATABASE_URL", None)

    def _pg_admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.args.postgres_server}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    # -- children -------------------------------------------------------------------------

    def run(self, scenario: str, n: int = 1) -> dict:
        """Run one step in a child process; n: its round (--rounds)."""
        result_file = self.tmp / f"{scenario}-{n}.json"
        argv = [
            sys.executable,
            __file__,
            "--scenario",
            scenario,
            "--users",
            str(self.args.users),
            "--seed",
            str(self.args.seed),
            "--page-size",
            str(self.args.page_size),
            "--info-file",
            str(self.info_file),
            "--result-file",
            str(result_file),
            "--round",
            str(n),
        ]
        if self.args.profile:
            argv += ["--profile", str(Path(self.args.profile).resolve())]
            argv += ["--profile-scenario", self.args.profile_scenario]
        if self.args.phases:
            argv.append("--phases")
        if self.args.serial:
            argv.append("--serial")
        if self.args.latency:
            argv += ["--latency", ",".join(f"{v:g}" for v in self.args.latency)]
        self.child = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        code = self.child.wait()
        self.child = None
        if code != 0:
            raise SystemExit(f"the {scenario} step failed (exit status {code})")
        return json.loads(result_file.read_text())

    # -- clean-up -------------------------------------------------------------------------

    def cleanup(self) -> None:
        for process in (self.child, self.simulator):
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.child = self.simulator = None
        if self.pg_database:
            try:
                self._pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
                self.pg_database = None
            except Exception as exc:  # report, but go on cleaning
                print(f"could not drop database {self.pg_database}: {exc}", file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)


def measure(args) -> list[dict]:
    bench = Bench(args)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        say(f"starting the simulator with {args.users:,} users…")
        t0 = time.perf_counter()
        bench.start_simulator()
        say(f"  ready in {time.perf_counter() - t0:.1f} s")
        bench.prepare_environment()
        bench.run("setup")
        results = {}
        timelines = {}
        say("full sync…")
        bench.control("DELETE", "requests")
        results["full"] = bench.run("full")
        log = bench.control("GET", "requests")["requests"]
        timelines["full"] = timeline(log, results["full"])
        say("floor: bare fetch, bulk write…")
        bench.control("DELETE", "requests")
        floor = bench.run("floor")
        floor_log = bench.control("GET", "requests")["requests"]
        split = floor.get("as_sync_started_at")
        plain = [e for e in floor_log if split is None or _log_time(e) < split]
        timelines["floor"] = timeline(plain, {"started_at": floor["started_at"]})
        if split is not None:
            later = [e for e in floor_log if _log_time(e) >= split]
            timelines["floor as sync"] = timeline(later, {"started_at": split})
        say("no-change sync…")
        bench.control("DELETE", "requests")
        results["nochange"] = bench.run("nochange")
        log = bench.control("GET", "requests")["requests"]
        timelines["nochange"] = timeline(log, results["nochange"])
        for n in range(1, args.rounds + 1):
            name = "incremental" if n == 1 else f"incremental {n}"
            say(f"changing {CHANGED_FRACTION:.0%} of the users in Dynamics…")
            bench.run("mutate", n)
            say(f"{name} sync…")
            results[name] = bench.run("incremental", n)
    finally:
        bench.cleanup()

    if floor["records"] != results["full"]["records"] or floor["records"] != args.users:
        print(
            f"warning: {args.users} users asked for; the floor read {floor['records']} "
            f"records, the full sync {results['full']['records']}",
            file=sys.stderr,
        )
    rows = []
    fetch, write = floor["fetch_seconds"], floor["write_seconds"]
    fetch_as_sync = floor.get("fetch_as_sync_seconds")
    for scenario, r in results.items():
        rows.append(
            {
                "scenario": scenario,
                # The directory kept in step; `records` is what the sync read of it (all of
                # it today; only the changes once the sync reads deltas).
                "users": args.users,
                "seconds": round(r["seconds"], 3),
                "cpu_seconds": round(r["cpu_seconds"], 3),
                "users_per_second": round(args.users / r["seconds"]),
                "records": r["records"],
                "floor_fetch_seconds": round(fetch, 3),
                "floor_write_seconds": round(write, 3),
                "ratio_to_floor_sum": round(r["seconds"] / (fetch + write), 2),
                "ratio_to_floor_max": round(r["seconds"] / max(fetch, write), 2),
                "ratio_to_floor_fetch": round(r["seconds"] / fetch, 3),
                **(
                    {
                        "floor_fetch_as_sync_seconds": round(fetch_as_sync, 3),
                        "ratio_to_floor_fetch_as_sync": round(r["seconds"] / fetch_as_sync, 3),
                    }
                    if fetch_as_sync
                    else {}
                ),
                "latency": list(args.latency) if args.latency else None,
                "requests": r["requests"],
                "statements": r["statements"],
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "rss_before_mb": round(r["rss_before_mb"], 1),
                "database": args.database,
                "page_size": args.page_size,
                "pages": r["pages"],
                "created": r["created"],
                "updated": r["updated"],
                "deactivated": r["deactivated"],
                "unchanged": r["unchanged"],
                "skipped": r["skipped"],
                "floor_peak_rss_mb": round(floor["peak_rss_mb"], 1),
                **({"phases": r["phases"]} if "phases" in r else {}),
                **({"timeline": timelines[scenario]} if scenario in timelines else {}),
                **(
                    {
                        "floor_timeline": timelines["floor"],
                        "floor_as_sync_timeline": timelines.get("floor as sync"),
                    }
                    if scenario == "full"
                    else {}
                ),
            }
        )
    return rows


def _log_time(entry: dict) -> float:
    """A request log entry's start (Unix seconds, to the millisecond)."""
    from datetime import datetime

    stamp = datetime.strptime(entry["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=UTC).timestamp()


def timeline(log: list[dict], result: dict) -> dict:
    """Where a run's wall time went, from the simulator's request log (each Web API
    request's start and its time in the simulator, latency included): before its first
    request (head), in requests other than the pages of systemusers (extra), between the
    page requests when none was in flight (idle), and after the last answer (tail)."""
    webapi = [e for e in log if e.get("kind") == "webapi" and e.get("status")]
    if not webapi:
        return {}
    spans = sorted((_log_time(e), _log_time(e) + e["duration_ms"] / 1000, e) for e in webapi)
    pages = [s for s in spans if "/systemusers?" in s[2]["path"]]
    extra = [s for s in spans if "/systemusers?" not in s[2]["path"]]
    idle, busy_until = 0.0, spans[0][0]
    for start, end, _ in spans:  # time with no Web API request in flight, after the first
        idle += max(0.0, start - busy_until)
        busy_until = max(busy_until, end)
    out = {
        "requests": len(spans),
        "pages": len(pages),
        "latency_seconds": round(sum(e.get("latency_ms", 0) for *_, e in spans) / 1000, 3),
        # the simulator's own time building the answers (it shares the CPUs with the sync)
        "server_seconds": round(
            sum(e["duration_ms"] - e.get("latency_ms", 0) for *_, e in spans) / 1000, 3
        ),
        "extra_requests": [
            f"{e['method']} {e['path'].split('/api/data/', 1)[-1][:60]} "
            f"{e['duration_ms'] / 1000:.2f}s"
            for *_, e in extra
        ],
        "extra_seconds_serial": round(sum(end - start for start, end, _ in extra), 3),
        "head_seconds": round(spans[0][0] - result["started_at"], 3),
        "webapi_span_seconds": round(busy_until - spans[0][0], 3),
        "idle_seconds": round(idle, 3),
    }
    if "ended_at" in result:
        out["tail_seconds"] = round(result["ended_at"] - busy_until, 3)
    return out


def print_table(rows: list[dict], args) -> None:
    first = rows[0]
    print(
        f"\n{args.database}, {first['users']:,} users, pages of {args.page_size}; floor: "
        f"fetch {first['floor_fetch_seconds']:.2f} s, write {first['floor_write_seconds']:.2f} s"
    )
    header = (
        f"{'scenario':<14}{'seconds':>9}{'CPU s':>8}{'users/s':>11}{'records':>11}{'requests':>9}"
        f"{'statements':>11}"
        f"{'peak RSS MB':>12}{'÷(fetch+write)':>15}{'÷max':>6}  outcome"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        outcome = (
            f"created {r['created']}, updated {r['updated']}, deactivated {r['deactivated']}, "
            f"unchanged {r['unchanged']}, skipped {r['skipped']}"
        )
        print(
            f"{r['scenario']:<14}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}"
            f"{r['users_per_second']:>11,}"
            f"{r['records']:>11,}{r['requests']:>9}{r['statements']:>11,}{r['peak_rss_mb']:>12.0f}"
            f"{r['ratio_to_floor_sum']:>15.2f}{r['ratio_to_floor_max']:>6.1f}  {outcome}"
        )
    if first["latency"]:
        per_request, per_row = first["latency"]
        as_sync = first.get("floor_fetch_as_sync_seconds")
        print(
            f"\nunder latency ({per_request:g} ms per request + {per_row:g} ms per row): "
            f"floor fetch {first['floor_fetch_seconds']:.2f} s"
            + (f", as the sync asks (change tracking) {as_sync:.2f} s" if as_sync else "")
        )
        for r in rows:
            print(
                f"  {r['scenario']:<14}{r['seconds']:>8.2f} s  ÷ floor fetch "
                f"{r['ratio_to_floor_fetch']:.3f}"
                + (
                    f"  ÷ as the sync asks {r['ratio_to_floor_fetch_as_sync']:.3f}"
                    if as_sync
                    else ""
                )
            )
        for name, t in (
            ("floor", first.get("floor_timeline")),
            ("floor as sync", first.get("floor_as_sync_timeline")),
            *((r["scenario"], r.get("timeline")) for r in rows),
        ):
            if not t:
                continue
            print(
                f"  {name} timeline: head {t['head_seconds']:.2f} s, Web API busy "
                f"{t['webapi_span_seconds'] - t['idle_seconds']:.2f} s ({t['requests']} "
                f"requests, {t['pages']} pages, latency {t['latency_seconds']:.2f} s, simulator "
                f"{t['server_seconds']:.2f} s), idle "
                f"between requests {t['idle_seconds']:.2f} s"
                + (f", tail {t['tail_seconds']:.2f} s" if "tail_seconds" in t else "")
            )
            if t["extra_requests"]:
                print(f"    not in the floor: {'; '.join(t['extra_requests'])}")
    for r in rows:
        if "phases" in r:
            print(f"\n{r['scenario']}: seconds by step (nested steps are part of their parent)")
            for name, seconds in r["phases"].items():
                print(f"  {name:<40}{seconds:>9.2f}")
    print(
        f"(peak RSS includes ~{first['rss_before_mb']:.0f} MB of interpreter and Django before "
        f"the sync; the floor's process peaked at {first['floor_peak_rss_mb']:.0f} MB)"
    )


def _latency(text: str) -> tuple[float, float]:
    try:
        per_request, per_row = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected PER_REQUEST_MS,PER_ROW_MS, e.g. 400,0.2"
        ) from None
    if not (0 <= per_request and 0 <= per_row):
        raise argparse.ArgumentTypeError("latencies cannot be negative")
    return per_request, per_row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, required=True, help="users in Dynamics")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--page-size", type=int, default=5000, help="records per page (5000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated users (1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument(
        "--postgres-server",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server (no database name); a database is created and dropped on it",
    )
    parser.add_argument(
        "--postgres-database-prefix",
        default="learnexa_bench",
        help="name of the database created for the run: PREFIX_<pid>_<random> (learnexa_bench)",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        metavar="PER_REQUEST_MS,PER_ROW_MS",
        help="set the simulator's latency model (e.g. 400,0.2) before anything is timed, and "
        "report each sync against the floor's fetch under the same latency",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="profile one sync with cProfile into FILE (its timing then includes the "
        "profiler's overhead)",
    )
    parser.add_argument(
        "--profile-scenario",
        choices=("full", "nochange", "incremental"),
        default="full",
        help="the sync --profile profiles (full)",
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="also time the sync's steps (fetch, map, plan, apply, SQL by table)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="fetch each page only when the previous one is written (no prefetch thread), "
        "so that --phases and --profile add up to the wall time",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="change 1 %% of the users and sync them this many times, other users each time, "
        "to see the incremental sync's spread (1)",
    )
    # Internal: one step, in a child process.
    parser.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--info-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.scenario:
        run_child(args)
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        rows = measure(args)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
