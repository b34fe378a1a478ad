import json
import secrets
import shlex
import signal
import time
from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from learnexa import encryption
from learnexa.accounts.models import Company, User
from learnexa.demo import state_file
from learnexa.demo.ports import free_port
from learnexa.demo.processes import Processes, child_env, wait_for_info_file
from learnexa.demo.simulator import connect_company
from learnexa.dynamics_crm.jobs import enqueue_sync
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

DEMO_COMPANY = "demo"
DEMO_ADMIN = "admin@demo.learnexa.test"
# The systemuser of the original design note, which the simulator always includes.
DESIGN_NOTE_USER = "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"


class Command(BaseCommand):
    help = (
        "Run the whole product on this machine: an SQLite database in the data folder, a "
        "simulated Dynamics 365 organization, a demo company connected to it, the background "
        "worker, the scheduler and the web app. Ctrl-C stops everything; running it again "
        "reuses the data."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=8000,
            help="Web app port (default 8000; the next free one if it is taken).",
        )
        parser.add_argument(
            "--users",
            type=int,
            default=300,
            help="Users in the simulated organization (default 300).",
        )
        parser.add_argument(
            "--sim-port",
            type=int,
            default=8443,
            help="Simulator port (default 8443; the next free one if it is taken).",
        )

    def handle(self, *args, port, users, sim_port, **options):
        # A service manager stops with SIGTERM rather than Ctrl-C: stop the children either way.
        signal.signal(signal.SIGTERM, _interrupt)
        # Ctrl-C too, even when a shell started the demo with SIGINT ignored (in the
        # background of a script).
        signal.signal(signal.SIGINT, _interrupt)
        processes = Processes(child_env())
        data = settings.DATA_DIR
        interrupted = False
        try:
            self._run(processes, data, port, users, sim_port)
        except KeyboardInterrupt:
            interrupted = True
            self.stdout.write("\nStopping…")
        finally:
            processes.stop()
            state_file.mark_stopped(data)
        if interrupted:
            self.stdout.write("Stopped.")

    def _run(self, processes: Processes, data: Path, port: int, users: int, sim_port: int):
        data.mkdir(parents=True, exist_ok=True)
        self._ensure_encryption_key(data)
        call_command("migrate", verbosity=0)

        sim_port = self._free_port(sim_port, "the simulator")
        port = self._free_port(port, "the web app")
        info_file = data / "simulator" / "info.json"
        info_file.unlink(missing_ok=True)
        sim_host = f"127.0.0.1:{sim_port}"
        # The children trust the simulator's CA and may send it tokens; nothing else changes.
        processes.env.update(LEARNEXA_DATA_DIR=str(data), LEARNEXA_DYNAMICS_ALLOWED_HOSTS=sim_host)
        env = processes.env
        simulator = processes.start(
            "simulator",
            [
                "-m",
                "dataverse_sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(sim_port),
                "--users",
                str(users),
                "--state-dir",
                str(data / "simulator"),
                "--info-file",
                str(info_file),
            ],
        )
        try:
            info = wait_for_info_file(info_file, simulator)
        except RuntimeError as exc:
            raise CommandError(
                f"{exc} Is port {sim_port} free? Choose another with --sim-port."
            ) from exc
        settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [sim_host]
        settings.LEARNEXA_DYNAMICS_CA_BUNDLE = info["ca_bundle"]
        env["LEARNEXA_DYNAMICS_CA_BUNDLE"] = info["ca_bundle"]
        # Links in emails (invitations) lead to this demo.
        web_url = f"http://127.0.0.1:{port}"
        env["LEARNEXA_BASE_URL"] = settings.LEARNEXA_BASE_URL = web_url

        company, password = self._demo_company(data)
        setting = DynamicsCrmSetting.objects.filter(company=company).first()
        # The demo company syncs every hour, and its people sign in with Microsoft; a
        # second run keeps what the admin changed since.
        fields = (
            {}
            if setting
            else {
                "sync_frequency": DynamicsCrmSetting.Frequency.HOURLY,
                "learner_sign_in": DynamicsCrmSetting.LearnerSignIn.MICROSOFT,
            }
        )
        setting = connect_company(company, info, **fields)
        if not SyncRun.objects.filter(company=company).exists():
            enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED)
        # What `learnexa` in a second shell needs to reach the simulator (learnexa.cli).
        state_file.write(
            data,
            simulator_host=sim_host,
            ca_bundle=info["ca_bundle"],
            company=company.slug,
            web_url=web_url,
        )

        processes.learnexa("worker", "worker", "--interval", "1", "--no-startup-delay")
        processes.learnexa("scheduler", "scheduler", "--loop", "--interval", "10")
        processes.learnexa("web", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks")
        self._say_hello(port, password, info, company)
        while (exited := processes.first_exited()) is None:
            time.sleep(0.5)
        name, code = exited
        raise CommandError(f"The {name} process stopped (exit code {code}); stopping the demo.")

    def _free_port(self, wanted: int, what: str) -> int:
        port = free_port(wanted)
        if port != wanted:
            self.stdout.write(f"Port {wanted} is taken; {what} uses {port}.")
        return port

    def _ensure_encryption_key(self, data: Path) -> None:
        if settings.LEARNEXA_ENCRYPTION_KEYS:
            return
        key_file = data / encryption.KEY_FILE_NAME
        if not key_file.exists():
            key_file.write_text(Fernet.generate_key().decode())
            key_file.chmod(0o600)

    def _demo_company(self, data: Path) -> tuple[Company, str]:
        company, _ = Company.objects.get_or_create(
            slug=DEMO_COMPANY, defaults={"name": "Demo Company"}
        )
        login_file = data / "demo-login.json"
        admin = User.objects.for_email(company, DEMO_ADMIN).first()
        if admin is None or not login_file.exists():
            password = secrets.token_urlsafe(12)
            if admin is None:
                admin = User.objects.create_site_admin(
                    company, DEMO_ADMIN, password, first_name="Demo", last_name="Admin"
                )
            else:
                admin.set_password(password)
                admin.save()
            login_file.write_text(json.dumps({"email": DEMO_ADMIN, "password": password}))
            login_file.chmod(0o600)
        return company, json.loads(login_file.read_text())["password"]

    def _say_hello(self, port: int, password: str, info: dict, company: Company) -> None:
        self.stdout.write(
            self.style.SUCCESS(f"\nLearnexa is running on http://127.0.0.1:{port}/\n")
        )
        self.stdout.write(f"  Sign in as   {DEMO_ADMIN}\n  Password     {password}\n")
        self.stdout.write(
            f"  Dynamics 365 (simulated) at {info['organization_uri']}, tenant {info['tenant_id']}\n\n"
            "Next: open Manage site → Integrate Dynamics CRM to watch the first sync, then "
            "Users to see who arrived from Dynamics.\n\n"
            "To see a change in Dynamics arrive, enable David So (disabled in Dynamics, so not "
            "synced yet) through the simulator's control API, then press Sync now:\n"
            f"  curl --cacert {info['ca_bundle']} -X POST \\\n"
            f"       -H 'Authorization: Bearer {info['control_token']}' \\\n"
            f"       {info['control_url']}/users/{DESIGN_NOTE_USER}/enable\n\n"
        )
        self.stdout.write(
            f"The demo company's slug is {company.slug}. The command line works from another "
            "shell too, with no variables to set (it finds the simulator in the data folder):\n"
            + "".join(f"  {command}\n" for command in cli_examples(company.slug))
            + "\n"
        )
        learner = self._a_learner(company)
        if learner:
            self.stdout.write(
                f"Sign in as a learner: open http://127.0.0.1:{port}/login/ and enter "
                f"{learner.email}\n(the simulated Entra ID signs them in with Microsoft).\n\n"
            )
        self.stdout.write("Press Ctrl-C to stop everything.\n")

    def _a_learner(self, company: Company) -> User | None:
        """A person the first sync brought in who signs in with Microsoft, once it has."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if SyncRun.objects.filter(company=company, status=SyncRun.Status.SUCCEEDED).exists():
                return (
                    User.objects.filter(
                        company=company,
                        is_active=True,
                        is_site_admin=False,
                        entra_object_id__isnull=False,
                    )
                    .exclude(email="")
                    .order_by("last_name", "first_name")
                    .first()
                )
            time.sleep(0.5)
        return None


def cli_examples(slug: str) -> list[str]:
    """Commands to try beside the demo; with the data folder named when it isn't ./data."""
    prefix = "uv run learnexa"
    if settings.DATA_DIR != settings.BASE_DIR / "data":
        prefix = f"LEARNEXA_DATA_DIR={shlex.quote(str(settings.DATA_DIR))} {prefix}"
    return [
        f"{prefix} company list --json",
        f"{prefix} dynamics sync {slug} --json",
        f"{prefix} users list {slug} --json",
        f"{prefix} status --json",
    ]


def _interrupt(signum, frame):
    # Once: a second Ctrl-C (or uv passing the first one on) must not cut the stopping short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
