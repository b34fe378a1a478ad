"""Load on the Manage site: the Users page of a 100,000-user company, then 20 admins browsing
while syncs run.

    uv run python benchmarks/web_load.py [--database sqlite|postgres] [--users 100000]
                                         [--requests 200] [--web-workers 3] [--admins 20]
                                         [--duration 60] [--sync-users 20000] [--json]

What one run does:

  1. Creates a fresh database (SQLite in a temporary folder, or a new PostgreSQL database),
     migrates it and inserts a company of `--users` users directly, with the product's bulk
     insert (`learnexa.dataflow.bulk.insert_rows`): varied names, job titles, ~85 % linked to
     Dynamics, ~5 % inactive. Adds 16 site admins to it, and 4 more companies, each with one
     site admin and connected to its own simulated Dynamics organization of `--sync-users`
     users (the scale-out benchmark's simulator host process, started meanwhile).
  2. Serves the product with `gunicorn learnexa.wsgi --workers W` on a free loopback port.
     Each admin signs in once through /login/ (GET for the CSRF token, POST the form) with
     an httpx client that keeps the session cookie.
  3. Latency: every URL of the Users page below, `--requests` times one after the other
     (after 3 unmeasured requests per server process), by one admin: p50/p95/max.
  4. Why: each URL once more in-process through Django's test client, timing every SQL
     statement it runs; the slowest is shown with its plan (EXPLAIN ANALYZE on PostgreSQL,
     EXPLAIN QUERY PLAN on SQLite) with `--explain`.
  5. Under load: 4 `learnexa worker` processes start and a full sync of the 4 connected
     companies is queued; once they run, `--admins` threads (16 in the large company, one in
     each syncing company), each with its own session, browse the dashboard, the Users page
     (plain, searched, filtered, a random page), a user's page (a user picked from the list
     just shown) and the Integration page, for `--duration` seconds or `--max-requests` each.
     Requests, errors (non-2xx/3xx, or an exception) and latency by page are reported, and
     how far the syncs got meanwhile.

Everything started is stopped, and the database dropped, on exit, Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

from scaleout_bench import ScaleoutBench, percentile
from sync_bench import ROOT

BIG_SLUG = "big"
SYNC_SLUGS = [f"sync-{n}" for n in range(4)]
TARGET_MS = 300
URLS = [
    ("users", "/manage/users/"),
    ("users page 2", "/manage/users/?page=2"),
    ("users last page", "/manage/users/?page=last"),
    ("search, common name", "/manage/users/?q=garcia"),
    ("search, one email", "/manage/users/?q=.4242%40big"),
    ("search, no match", "/manage/users/?q=zzqxj"),
    ("active+linked p1", "/manage/users/?status=active&link=linked&page=1"),
    ("active+linked p50", "/manage/users/?status=active&link=linked&page=50"),
    ("inactive+unlinked", "/manage/users/?status=inactive&link=unlinked"),
]
FIRST = """Emma Liam Olivia Noah Ava Oliver Sophia Elijah Isabella James Mia William Amelia
Benjamin Harper Lucas Evelyn Henry Abigail Alexander Emily Michael Ella Daniel Elizabeth
Jacob Camila Logan Luna Jackson Sofia Sebastian Avery Jack Mila Aiden Aria Owen Scarlett
Samuel Penelope Matthew Layla Joseph Chloe Levi Victoria David Madison John Eleanor Wyatt
Grace Carter Nora Julian Riley Luke Zoey Grayson Hannah Isaac Hazel Jayden Lily Theodore
Ellie Gabriel Violet Anthony Lillian Dylan Zoe Leo Stella Lincoln Aurora Jaxon Natalie
Asher Emilia Christopher Everly Josiah Leah Andrew Aubrey Thomas Willow Joshua Addison
Ezra Lucy Hudson Audrey Charles Bella Caleb Nova Isaiah Brooklyn Ryan Paisley Nathan
Savannah Adrian Claire Christian Skylar Aaron Anna Chen Wei Priya Arjun Yuki Hiroshi
Fatima Omar Lars Ingrid Mateo Lucia Kwame Amara Dmitri Olga Siobhan Cormac Aroha Tane""".split()
LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White
Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres
Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts
Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales
Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos
Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes
Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry
Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons
Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West
Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro
Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry
Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez
Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd
Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols
Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce
Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong""".split()
TITLES = """Account Manager|Sales Representative|Customer Success Manager|Software Engineer|
Product Manager|HR Business Partner|Financial Analyst|Marketing Specialist|Support Engineer|
Operations Manager|Data Analyst|Project Coordinator|Warehouse Associate|Nurse|Teacher|
Consultant|Team Lead|Director of Sales|Field Technician|Recruiter""".replace("\n", "").split("|")
CITIES = "London Paris Berlin Madrid Auckland Sydney Toronto Chicago Austin Dublin Oslo".split()


# -- in the parent, with Django (after the environment is set) -----------------------------


def _django(env: dict) -> None:
    os.environ.update(env)
    import django

    django.setup()


def create_data(args, password: str, organizations: list[dict]) -> dict:
    """Migrate; the large company and its users; the admins; the syncing companies."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from learnexa.accounts.models import Company, User
    from learnexa.dataflow.bulk import insert_rows

    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    call_command("migrate", verbosity=0, interactive=False)
    rng = random.Random(42)
    now = timezone.now()
    big = Company.objects.create(slug=BIG_SLUG, name="Big Company")
    fields = [
        f.name for f in User._meta.concrete_fields if not f.primary_key and f.name != "last_login"
    ]
    # Fields not set below (added since) get their default.
    defaults = {f: User._meta.get_field(f).get_default() for f in fields}
    started = time.perf_counter()
    seen: set[str] = set()
    batch: list[tuple] = []

    def flush():
        insert_rows(User, fields, batch)
        batch.clear()

    with transaction.atomic():
        for n in range(args.users):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}.{n}@big.example".lower()
            seen.add(email)
            linked = rng.random() < 0.85
            values = {
                "password": "!" + secrets.token_urlsafe(30),
                "company": big.pk,
                "email": email,
                "first_name": first,
                "last_name": last,
                "job_title": rng.choice(TITLES),
                "phone": "",
                "city": rng.choice(CITIES),
                "country": "",
                "employee_id": f"E{n:06d}",
                "department": "",
                "is_active": rng.random() >= 0.05,
                "is_site_admin": False,
                "created_source": User.Source.DYNAMICS_CRM if linked else User.Source.IMPORT,
                "dynamics_systemuser_id": uuid.UUID(int=rng.getrandbits(128)) if linked else None,
                "entra_object_id": None,
                "deactivated_by_sync_at": None,
                "created_at": now,
                "updated_at": now,
            }
            batch.append(tuple(values[f] if f in values else defaults[f] for f in fields))
            if len(batch) == 5000:
                flush()
        flush()
    insert_seconds = time.perf_counter() - started

    admins = []
    for n in range(args.admins - len(SYNC_SLUGS)):
        email = f"admin{n}@big.example"
        User.objects.create_site_admin(big, email, password, first_name="Admin", last_name=str(n))
        admins.append({"email": email, "company": BIG_SLUG})
    for slug, org in zip(SYNC_SLUGS, organizations, strict=True):
        company = Company.objects.create(slug=slug, name=slug)
        email = f"admin@{slug}.example"
        User.objects.create_site_admin(company, email, password, last_name="Admin")
        admins.append({"email": email, "company": slug})
        _connect(company, org)
    # The large company is connected too (not synced here), so its Integration page and
    # dashboard panel show a configured integration.
    _connect(big, organizations[0])
    if connection_vendor() == "postgresql":
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {"insert_seconds": insert_seconds, "admins": admins}


def _connect(company, org: dict) -> None:
    from learnexa.demo.simulator import connect_company
    from learnexa.dynamics_crm.models import DynamicsCrmSetting

    connect_company(company, org, sync_frequency=DynamicsCrmSetting.Frequency.OFF)


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor


def explain_urls(admin_email: str, urls: list[tuple[str, str]], show_plans: bool) -> list[dict]:
    """Each URL in-process (Django's test client): its statements, timed; the slowest one's
    plan."""
    from django.db import connection
    from django.test import Client

    from learnexa.accounts.models import User

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(email=admin_email))
    found = []
    for name, url in urls:
        client.get(url)  # warm
        statements = []

        def timed(execute, sql, params, many, context, statements=statements):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                statements.append((time.perf_counter() - started, sql, params))

        with connection.execute_wrapper(timed):
            started = time.perf_counter()
            response = client.get(url)
            total = time.perf_counter() - started
        slowest = max(statements, key=lambda s: s[0])
        entry = {
            "name": name,
            "url": url,
            "status": response.status_code,
            "view_ms": round(total * 1000, 1),
            "sql_ms": round(sum(s[0] for s in statements) * 1000, 1),
            "statements": len(statements),
            "slowest_ms": round(slowest[0] * 1000, 1),
            "slowest_sql": slowest[1],
        }
        if show_plans:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest[1], slowest[2])
                    entry["plan"] = "\n".join(row[0] for row in cursor.fetchall())
                else:
                    cursor.execute("EXPLAIN QUERY PLAN " + slowest[1], slowest[2])
                    entry["plan"] = "\n".join(str(row[-1]) for row in cursor.fetchall())
        found.append(entry)
    return found


def sync_progress() -> list[dict]:
    from learnexa.dynamics_crm.models import SyncRun

    return [
        {
            "company": run.company.slug,
            "status": run.status,
            "attempt": run.attempt,
            "error": run.error,
            "records": run.records,
            "seconds": round(
                ((run.finished_at or run.started_at) - run.started_at).total_seconds(), 1
            )
            if run.started_at
            else None,
        }
        for run in SyncRun.objects.select_related("company").order_by("company__slug")
    ]


def enqueue_syncs() -> None:
    from learnexa.dynamics_crm.jobs import enqueue_sync
    from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

    for setting in DynamicsCrmSetting.objects.filter(company__slug__in=SYNC_SLUGS):
        enqueue_sync(setting, SyncRun.Trigger.MANUAL, full=True)


# -- HTTP -----------------------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
USER_LINK = re.compile(r'href="/manage/users/(\d+)/"')


def sign_in(base: str, email: str, password: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=30, trust_env=False, follow_redirects=False)
    page = client.get("/login/")
    page.raise_for_status()
    token = CSRF_INPUT.search(page.text).group(1)
    response = client.post(
        "/login/",
        data={"username": email, "password": password, "csrfmiddlewaretoken": token, "next": ""},
    )
    if response.status_code != 302 or "sessionid" not in client.cookies:
        raise SystemExit(f"signing in as {email} failed: HTTP {response.status_code}")
    return client


def measure_latency(client, urls, count: int, say, warm: int) -> list[dict]:
    rows = []
    for name, url in urls:
        for _ in range(warm):  # every server process, warm
            client.get(url)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}")
        found = re.search(r'role="status">(\d+) user', response.text)
        rows.append(
            {
                "name": name,
                "url": url,
                "requests": count,
                "matches": int(found.group(1)) if found else None,
                "p50_ms": round(percentile(times, 50), 1),
                "p95_ms": round(percentile(times, 95), 1),
                "max_ms": round(max(times), 1),
            }
        )
        say(f"  {name:<24}{rows[-1]['p50_ms']:>8.1f}{rows[-1]['p95_ms']:>8.1f} ms")
    return rows


def browse(client, company: str, stop: threading.Event, max_requests: int, seed: int, record):
    """One admin clicking around until told to stop."""
    rng = random.Random(seed)
    user_ids: list[str] = []
    for _ in range(max_requests):
        if stop.is_set():
            return
        kind = rng.choice(
            ["dashboard", "users", "users search", "users filter", "user", "user", "integration"]
        )
        if kind == "dashboard":
            url = "/manage/"
        elif kind == "users":
            url = f"/manage/users/?page={rng.randint(1, 40)}"
        elif kind == "users search":
            url = f"/manage/users/?q={rng.choice(LAST).lower()}"
        elif kind == "users filter":
            url = f"/manage/users/?status=active&link=linked&page={rng.randint(1, 20)}"
        elif kind == "user":
            if not user_ids:
                kind, url = "users", "/manage/users/"
            else:
                url = f"/manage/users/{rng.choice(user_ids)}/"
        else:
            url = "/dynamics_crm/"
        started = time.perf_counter()
        try:
            response = client.get(url)
            ok = 200 <= response.status_code < 400
            error = None if ok else f"HTTP {response.status_code} on {url}"
        except Exception as exc:  # counted, reported, and the admin carries on
            ok, error, response = False, f"{type(exc).__name__} on {url}", None
        record(kind, (time.perf_counter() - started) * 1000, error)
        if ok and kind.startswith("users"):
            user_ids = USER_LINK.findall(response.text) or user_ids


# -- the parent -----------------------------------------------------------------------------


class WebLoad(ScaleoutBench):
    def __init__(self, args):
        args.companies, args.huge = len(SYNC_SLUGS), 0
        super().__init__(args)
        self.server: subprocess.Popen | None = None

    def start_simulators(self) -> None:
        # The scale-out benchmark's host: 4 organizations in one process.
        users, self.args.users = self.args.users, self.args.sync_users
        try:
            super().start_simulators()
        finally:
            self.args.users = users

    def start_server(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = [sys.executable, "-m", "gunicorn", "learnexa.wsgi", "--workers"]
        argv += [str(self.args.web_workers), "--bind", f"127.0.0.1:{port}", "--timeout", "60"]
        log = self.tmp / "gunicorn.log"
        self.server = self._spawn(argv, log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise SystemExit("gunicorn stopped:\n" + log.read_text(errors="replace")[-3000:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return base
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start in time")
            time.sleep(0.2)

    def cleanup(self) -> None:
        from scaleout_bench import _stop

        if self.server is not None:
            _stop([self.server])
            self.server = None
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()  # or PostgreSQL's DROP DATABASE waits on us
        super().cleanup()


def run(args) -> dict:
    bench = WebLoad(args)
    say = bench.say
    report: dict = {"database": args.database, "users": args.users}
    try:
        say(f"starting {len(SYNC_SLUGS)} simulated organizations of {args.sync_users:,} users…")
        bench.start_simulators()
        bench.new_database()
        bench.env["LEARNEXA_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
        _django(bench.env)
        password = secrets.token_urlsafe(16)
        say(f"creating {args.users:,} users ({args.database})…")
        created = create_data(args, password, bench.organizations[: len(SYNC_SLUGS)])
        report["insert_seconds"] = round(created["insert_seconds"], 1)
        say(f"  inserted in {created['insert_seconds']:.1f} s")
        from django.db import connections

        connections.close_all()
        base = bench.start_server()
        admins = created["admins"]
        first = sign_in(base, admins[0]["email"], password)

        say(f"latency, {args.requests} requests per URL, one admin (p50, p95):")
        report["latency"] = measure_latency(
            first, URLS, args.requests, say, warm=3 * args.web_workers
        )
        say("statements per URL, in-process…")
        report["queries"] = explain_urls(admins[0]["email"], URLS, args.explain)
        connections.close_all()

        say(f"signing in {len(admins)} admins…")
        clients = [(sign_in(base, a["email"], password), a["company"]) for a in admins]
        say(f"starting 4 workers and syncing {len(SYNC_SLUGS)} companies…")
        bench.start_workers()
        enqueue_syncs()
        deadline = time.monotonic() + 60
        while sum(r["status"] == "running" for r in sync_progress()) < len(SYNC_SLUGS):
            if time.monotonic() > deadline:
                raise SystemExit(f"the syncs did not all start: {sync_progress()}")
            time.sleep(0.2)
        connections.close_all()

        lock = threading.Lock()
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []

        def record(kind, ms, error):
            with lock:
                latencies[kind].append(ms)
                if error:
                    errors.append(error)

        stop = threading.Event()
        threads = [
            threading.Thread(
                target=browse, args=(c, company, stop, args.max_requests, n, record), daemon=True
            )
            for n, (c, company) in enumerate(clients)
        ]
        say(f"{len(threads)} admins browsing for {args.duration:.0f} s while the syncs run…")
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        stop.wait(args.duration)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.perf_counter() - started
        during = sync_progress()
        connections.close_all()
        all_ms = [ms for values in latencies.values() for ms in values]
        report["load"] = {
            "admins": len(threads),
            "seconds": round(elapsed, 1),
            "requests": len(all_ms),
            "requests_per_second": round(len(all_ms) / elapsed, 1),
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:5],
            "p50_ms": round(percentile(all_ms, 50), 1),
            "p95_ms": round(percentile(all_ms, 95), 1),
            "max_ms": round(max(all_ms), 1),
            "by_page": {
                kind: {
                    "requests": len(values),
                    "p50_ms": round(percentile(values, 50), 1),
                    "p95_ms": round(percentile(values, 95), 1),
                    "max_ms": round(max(values), 1),
                }
                for kind, values in sorted(latencies.items())
            },
            "syncs_when_browsing_stopped": during,
        }
        for client, _ in clients:
            client.close()
        first.close()
    finally:
        bench.cleanup()
    return report


def print_report(r: dict) -> None:
    print(f"\n{r['database']}: Users page of a company of {r['users']:,} users")
    print(f"{'URL':<26}{'users':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}  target {TARGET_MS} ms")
    for row in r["latency"]:
        flag = "" if row["p95_ms"] <= TARGET_MS else "  SLOW"
        matches = "" if row["matches"] is None else f"{row['matches']:,}"
        print(
            f"{row['name']:<26}{matches:>8}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}"
            f"{row['max_ms']:>9.1f}{flag}"
        )
    print("\nin-process: view ms, SQL ms (statements), slowest statement")
    for q in r["queries"]:
        print(
            f"  {q['name']:<24}{q['view_ms']:>8.1f}{q['sql_ms']:>8.1f} ({q['statements']})"
            f"{q['slowest_ms']:>8.1f}  {q['slowest_sql'][:110]}"
        )
        if "plan" in q:
            print("    " + q["plan"].replace("\n", "\n    "))
    load = r["load"]
    print(
        f"\n{load['admins']} admins for {load['seconds']} s during 4 syncs: {load['requests']} "
        f"requests ({load['requests_per_second']}/s), {load['errors']} errors; "
        f"p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, max {load['max_ms']} ms"
    )
    for kind, s in load["by_page"].items():
        print(
            f"  {kind:<14}{s['requests']:>6}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['max_ms']:>9.1f}"
        )
    for example in load["error_examples"]:
        print(f"  error: {example}")
    print(
        "  syncs when browsing stopped: "
        + ", ".join(
            f"{s['company']} {s['status']} {s['records']:,} read"
            + (f" (attempt {s['attempt']}: {s['error'][:200]})" if s["error"] else "")
            for s in load["syncs_when_browsing_stopped"]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--users", type=int, default=100_000, help="users of the company (100000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per URL (200)")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers (3)")
    parser.add_argument("--workers", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--admins", type=int, default=20, help="concurrent admins (20)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of browsing (60)")
    parser.add_argument("--max-requests", type=int, default=1000, help="per admin (1000)")
    parser.add_argument(
        "--sync-users", type=int, default=20_000, help="users of each syncing company (20000)"
    )
    parser.add_argument("--explain", action="store_true", help="print the slowest plans")
    parser.add_argument(
        "--postgres-server",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server (no database name); a database is created and dropped on it",
    )
    parser.add_argument("--page-size", type=int, default=5000, help=argparse.SUPPRESS)
    parser.add_argument("--sim-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = run(args)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    slow = [row["name"] for row in report["latency"] if row["p95_ms"] > TARGET_MS]
    if report["load"]["errors"] or slow:
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
