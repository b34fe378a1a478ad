"""Workers killed with SIGKILL at random points of a sync, twenty times over: each killed run
is resumed (its lease expired, the scheduler's resume_abandoned, a worker) and must end
with exactly the user table a clean sync makes of the same data.

The syncs run in real processes against a database file (SQLite) or a database of their
own (PostgreSQL). To keep the test fast, one process imports the product once and forks a
child per sync; the children are what gets killed. The first sync of all is the real
`python -m learnexa.cli dynamics sync` command."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings as django_settings

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
USERS = 400
PAGE = 20
KILLS = 20
# More companies than the kills need: a kill aimed near the end of a run often comes after
# the run has finished, and the syncs are fast enough now that many do.
COMPANIES = [f"kill{n}" for n in range(30)]

# The forking process: commands on stdin, one per line; answers on stdout.
#   setup <info json>      migrate, create the companies and a clean one, sync the clean one
#   sync <slug>     fork a child that runs `dynamics sync`; answers "pid N", then "exit S"
#   resume <slug>   expire the lease, resume_abandoned(), then fork a child running a worker
ZYGOTE = r"""
import json, os, sys, traceback
from datetime import timedelta
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
import django
django.setup()
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from learnexa.accounts.models import Company
from learnexa.demo.simulator import connect_company
from learnexa.dynamics_crm.models import DynamicsCrmSetting
from learnexa.dynamics_crm.schedule import resume_abandoned

def answer(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()

def setup(info, slugs):
    call_command("migrate", verbosity=0)
    for slug in slugs:
        company = Company.objects.create(slug=slug, name=slug)
        connect_company(company, info, sync_frequency="off")
    call_command("dynamics", "sync", "clean", "--json", stdout=open(os.devnull, "w"))

def prepare(action, slug):
    if action == "resume":
        # The dead worker's lease, expired rather than waited for; then what the scheduler
        # does: runs left running by a dead worker are queued again.
        DynamicsCrmSetting.objects.filter(company__slug=slug).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        resume_abandoned()

def work(action, slug):
    if action == "sync":
        call_command("dynamics", "sync", slug, "--json", stdout=open(os.devnull, "w"))
    else:
        call_command("worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)

for line in sys.stdin:
    action, _, rest = line.strip().partition(" ")
    if action == "setup":
        info = json.loads(rest)
        setup(info, info["slugs"] + ["clean"])
        connections.close_all()
        answer("ready")
        continue
    prepare(action, rest)
    connections.close_all()  # nothing shared with the child
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work(action, rest)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    answer("pid", pid)
    _, status = os.waitpid(pid, 0)
    answer("exit", status)
"""


class Database:
    """The test's own view of the processes' database: plain SQL, no Django."""

    def __init__(self, tmp_path: Path):
        self.name = f"learnexa_kills_{uuid.uuid4().hex[:12]}"
        if POSTGRES:
            import psycopg

            params = django_settings.DATABASES["default"]
            self.server = {
                "host": params["HOST"] or "127.0.0.1",
                "port": params["PORT"] or 5432,
                "user": params["USER"],
                "password": params["PASSWORD"] or None,
            }
            with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
            password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
            self.url = (
                f"postgres://{params['USER']}{password}@{self.server['host']}:"
                f"{self.server['port']}/{self.name}"
            )
        else:
            self.path = tmp_path / "learnexa.sqlite3"
            self.url = f"sqlite:///{self.path}"
        self._conn = None

    def query(self, sql: str, params=()) -> list[tuple]:
        if self._conn is None:
            if POSTGRES:
                import psycopg

                self._conn = psycopg.connect(dbname=self.name, autocommit=True, **self.server)
            else:
                import sqlite3

                self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if POSTGRES:
            return list(self._conn.execute(sql.replace("?", "%s"), params).fetchall())
        return self._conn.execute(sql, params).fetchall()

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if POSTGRES:
            import psycopg

            with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    # -- what the test looks at

    def table(self, slug: str) -> list[tuple]:
        return sorted(
            self.query(
                "SELECT email, first_name, last_name, job_title, phone, city, country, "
                "employee_id, department, is_active, created_source, dynamics_systemuser_id, "
                "entra_object_id FROM users WHERE company_id = "
                "(SELECT id FROM companies WHERE slug = ?)",
                (slug,),
            )
        )

    def last_run(self, slug: str) -> dict | None:
        rows = self.query(
            "SELECT r.id, r.status, r.pages, r.records, r.settled, r.error, r.deactivated, "
            "(SELECT COUNT(*) FROM dynamics_crm_syncchange c WHERE c.run_id = r.id) "
            "FROM dynamics_crm_syncrun r JOIN companies co ON co.id = r.company_id "
            "WHERE co.slug = ? ORDER BY r.id DESC LIMIT 1",
            (slug,),
        )
        if not rows:
            return None
        keys = ("id", "status", "pages", "records", "settled", "error", "deactivated", "changes")
        return dict(zip(keys, rows[0], strict=True))

    def run_count(self, slug: str) -> int:
        return self.query(
            "SELECT COUNT(*) FROM dynamics_crm_syncrun r JOIN companies co "
            "ON co.id = r.company_id WHERE co.slug = ?",
            (slug,),
        )[0][0]


class Zygote:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 60) -> list[str]:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the worker process stopped answering"
        words = self.proc.stdout.readline().split()
        assert words, "the worker process exited"
        return words

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def wait_then_kill(db: Database, slug: str, pid: int, *, pages: int, jitter: float, done) -> bool:
    """Kill `pid` once the company's run has applied `pages` pages (then `jitter` seconds
    more); False if it finished first."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if done():
            return False
        run = db.last_run(slug)
        if run and run["status"] == "running" and run["pages"] >= pages:
            time.sleep(jitter)
            if done():
                return False
            os.kill(pid, signal.SIGKILL)
            return True
        time.sleep(0.003)
    raise AssertionError(f"the sync of {slug} made no progress")


def test_workers_killed_at_random_points_resume_to_the_clean_table(tmp_path, make_simulator):
    started = time.monotonic()
    simulator = make_simulator(users=USERS)
    info = simulator.info
    db = Database(tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": db.url,
        "LEARNEXA_DATA_DIR": str(tmp_path),
        "LEARNEXA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LEARNEXA_DYNAMICS_ALLOWED_HOSTS": info["organization_uri"].removeprefix("https://"),
        "LEARNEXA_DYNAMICS_CA_BUNDLE": info["ca_bundle"],
        "LEARNEXA_DYNAMICS_PAGE_SIZE": str(PAGE),
        # Pages of 20 come faster than they are written: they share transactions, each
        # short enough that a run commits many times and the kills land in between.
        "LEARNEXA_SYNC_TRANSACTION_SECONDS": "0.01",
        "LEARNEXA_LOG_LEVEL": "ERROR",
        "LEARNEXA_EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }
    rng = random.Random(20240611)
    zygote = Zygote(env)
    try:
        zygote.send("setup " + json.dumps({**info, "slugs": COMPANIES}))
        assert zygote.read(timeout=90) == ["ready"]
        clean = db.table("clean")
        total = sum(1 for _ in simulator.store.users())
        assert len(clean) > 300 and db.last_run("clean")["pages"] == -(-total // PAGE) >= 20

        kills, companies_done, kill_points = 0, [], []
        for slug in COMPANIES:
            if kills >= KILLS:
                break
            # Each company's first sync is killed, then its resumptions, 1 to 3 times in all.
            for attempt in range(rng.randint(1, 3)):
                if kills >= KILLS:
                    break
                pages, jitter = rng.randint(0, 21), rng.uniform(0, 0.06)
                if slug == COMPANIES[0] and attempt == 0:
                    # The real command, started from scratch.
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "learnexa.cli", "dynamics", "sync", slug],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                    )
                    killed = wait_then_kill(
                        db,
                        slug,
                        proc.pid,
                        pages=pages,
                        jitter=jitter,
                        done=lambda p=proc: p.poll() is not None,
                    )
                    proc.wait(timeout=30)
                    status = proc.returncode
                    killed = killed and status == -signal.SIGKILL
                else:
                    zygote.send(f"{'sync' if attempt == 0 else 'resume'} {slug}")
                    action, pid = zygote.read()
                    assert action == "pid"
                    exited = []

                    def done(exited=exited):
                        if not exited and select.select([zygote.proc.stdout], [], [], 0)[0]:
                            exited.append(zygote.read())
                        return bool(exited)

                    killed = wait_then_kill(
                        db, slug, int(pid), pages=pages, jitter=jitter, done=done
                    )
                    if not exited:
                        exited.append(zygote.read())
                    status = int(exited[0][1])
                    killed = killed and os.WIFSIGNALED(status)
                run = db.last_run(slug)
                if not killed or run["status"] == "succeeded":
                    assert run["status"] == "succeeded", run
                    break
                kills += 1
                kill_points.append((slug, run["pages"], round(jitter, 3)))
                # Killed: whole pages only, one change record per record read, nothing
                # deactivated, and no second user for anyone.
                assert run["status"] == "running", run
                assert run["deactivated"] == 0
                if not run["settled"]:
                    assert run["changes"] == run["records"] == min(run["pages"] * PAGE, total)
                table = db.table(slug)
                assert len({row[0].lower() for row in table}) == len(table)
                assert all(row[9] for row in table)
                assert set(table) <= set(clean)

            # Resume until it finishes, without killing.
            zygote.send(f"resume {slug}")
            assert zygote.read()[0] == "pid"
            assert zygote.read()[0] == "exit"
            run = db.last_run(slug)
            assert run["status"] == "succeeded", run
            assert db.run_count(slug) == 1  # the same run, resumed; never a second one
            assert run["changes"] == run["records"] == total
            assert db.table(slug) == clean, f"{slug} differs from a clean sync"
            companies_done.append(slug)

        assert kills == KILLS, kill_points
        assert len(companies_done) >= 7
        assert time.monotonic() - started < 90
    finally:
        zygote.close()
        db.drop()
