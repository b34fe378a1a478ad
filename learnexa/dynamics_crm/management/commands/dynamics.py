import json
import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError

from learnexa.accounts.commands import company_or_error
from learnexa.dynamics_crm.forms import forget_delta_if_moved
from learnexa.dynamics_crm.lookup import lookup_person
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.progress import describe
from learnexa.dynamics_crm.sync import SyncAlreadyRunning, execute_run


class Command(BaseCommand):
    help = (
        "The Dynamics 365 integration from the command line.\n"
        "  dynamics configure COMPANY --organization-uri URI --tenant-id T --client-id C "
        "[--client-secret-stdin] [--authority-host URL]\n"
        "  dynamics sync COMPANY [--full] [--dry-run] [--json]: sync now, in the foreground; "
        "exits 0 on success.\n"
        "  dynamics lookup COMPANY EMAIL [--apply]: find one person in Dynamics by email, show "
        "what a sync would do to them, and with --apply do it."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        configure = sub.add_parser(
            "configure", help="Connect a company to its Dynamics 365 organization."
        )
        configure.add_argument("company", help="The company's slug.")
        configure.add_argument(
            "--organization-uri", required=True, help="e.g. https://contoso.crm.dynamics.com"
        )
        configure.add_argument(
            "--tenant-id", required=True, help="Directory (tenant) ID or domain."
        )
        configure.add_argument("--client-id", required=True, help="Application (client) ID.")
        configure.add_argument(
            "--client-secret-stdin",
            action="store_true",
            help="Read the client secret from the first line of standard input (it is never "
            "accepted as an argument, where other users could see it).",
        )
        configure.add_argument(
            "--authority-host", default=None, help="Default: https://login.microsoftonline.com"
        )
        configure.add_argument(
            "--frequency",
            choices=DynamicsCrmSetting.Frequency.values,
            default=None,
            help="How often to sync automatically (default: weekly).",
        )

        sync = sub.add_parser("sync", help="Sync a company's users now, in the foreground.")
        sync.add_argument("company", help="The company's slug.")
        sync.add_argument(
            "--full",
            action="store_true",
            help="Read everything, not only the changes since the last sync.",
        )
        sync.add_argument(
            "--dry-run",
            action="store_true",
            help="Work out every change and record it, but write nothing.",
        )
        sync.add_argument(
            "--json", action="store_true", help="Print the run's summary as one JSON object."
        )

        lookup = sub.add_parser("lookup", help="Look one person up in Dynamics by email.")
        lookup.add_argument("company", help="The company's slug.")
        lookup.add_argument("email")
        lookup.add_argument("--apply", action="store_true", help="Sync this person now.")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_configure(
        self,
        *,
        company,
        organization_uri,
        tenant_id,
        client_id,
        client_secret_stdin,
        authority_host,
        frequency,
        **options,
    ):
        company = company_or_error(company)
        setting = DynamicsCrmSetting.objects.filter(company=company).first() or DynamicsCrmSetting(
            company=company
        )
        previous_uri = setting.organization_uri
        setting.organization_uri = organization_uri
        setting.tenant_id = tenant_id
        setting.client_id = client_id
        if authority_host is not None:
            setting.authority_host = authority_host
        if frequency:
            setting.sync_frequency = frequency
        try:
            if client_secret_stdin:
                secret = sys.stdin.readline().strip()
                if not secret:
                    raise CommandError(
                        "--client-secret-stdin was given, but standard input had no secret."
                    )
                setting.set_client_secret(secret)
            setting.full_clean(exclude=["company"])
        except ValidationError as exc:
            raise CommandError(
                " ".join(f"{m}" for msgs in exc.message_dict.values() for m in msgs)
            ) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if not setting.has_client_secret:
            raise CommandError("No client secret is saved yet: pass it with --client-secret-stdin.")
        # As the settings form does: a delta link from another organization can't be followed.
        forget_delta_if_moved(setting, previous_uri)
        if setting.next_sync_at is None:
            setting.schedule_next()
        setting.save()
        self.stdout.write(
            f"Dynamics 365 for {company.slug}: {setting.organization_uri} (tenant {setting.tenant_id}, client {setting.client_id})."
        )

    def handle_sync(self, *, company, full=False, dry_run=False, json: bool = False, **options):
        try:
            setting = _setting_or_error(company)
        except CommandError as exc:
            if json:
                self.stdout.write(json_dumps({"company": company, "error": str(exc)}))
            raise
        run = SyncRun.objects.create(
            setting=setting,
            company=setting.company,
            trigger=SyncRun.Trigger.COMMAND_LINE,
            full=full,
            dry_run=dry_run,
        )
        # Progress goes to standard error, so --json output on standard output stays JSON.
        show_progress = sys.stderr.isatty()
        try:
            execute_run(run, progress=self._progress if show_progress else None)
        except SyncAlreadyRunning as exc:
            run.delete()
            message = f"{exc} Try again when it has finished."
            if json:
                self.stdout.write(json_dumps({"company": setting.company.slug, "error": message}))
            raise CommandError(message) from exc
        if show_progress:
            sys.stderr.write("\n")
        if json:
            self.stdout.write(json_dumps(run.summary()))
        else:
            self.stdout.write(
                ", ".join(f"{name} {getattr(run, name)}" for name in SyncRun.COUNTERS)
            )
        if run.status != SyncRun.Status.SUCCEEDED:
            raise CommandError(run.error.splitlines()[0] if run.error else "The sync failed.")

    def handle_lookup(self, *, company, email, apply=False, **options):
        setting = _setting_or_error(company)
        try:
            result = lookup_person(setting, email, apply=apply)
        except SyncAlreadyRunning as exc:
            raise CommandError(str(exc)) from exc
        for number, step in enumerate(result.steps, 1):
            self.stdout.write(f"{number}. {step}")
        if result.error:
            raise CommandError(result.error.splitlines()[0])

    def _progress(self, run: SyncRun) -> None:
        progress = describe(run)
        percent = "" if progress["percent"] is None else f"{progress['percent']:.0f} % · "
        sys.stderr.write(f"\r{percent}{progress['text']}\033[K")
        sys.stderr.flush()


def _setting_or_error(slug: str) -> DynamicsCrmSetting:
    company = company_or_error(slug)
    setting = DynamicsCrmSetting.objects.filter(company=company).first()
    if setting is None:
        raise CommandError(
            f"{company.slug} isn't connected to Dynamics 365: run `learnexa dynamics configure {company.slug} ...` first."
        )
    # The demo's simulator, recorded in the data folder, while the demo isn't running: say
    # so at once, rather than after a minute of retries and an email to the site admins.
    stopped = settings.LEARNEXA_DEMO_SIMULATOR_STOPPED
    if stopped and setting.organization_uri.rstrip("/").lower() == stopped.lower():
        raise CommandError(
            f"Can't reach {stopped}: is the demo running? Start it with `uv run learnexa demo`."
        )
    return setting


def json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
