import json

from django.core.management.base import BaseCommand, CommandError

from learnexa.accounts.commands import company_or_error

# Every field a sync keeps current, and how the user is linked to Dynamics and Entra ID.
FIELDS = [
    "email",
    "first_name",
    "last_name",
    "job_title",
    "phone",
    "city",
    "country",
    "employee_id",
    "department",
    "is_active",
    "is_site_admin",
    "created_source",
    "dynamics_systemuser_id",
    "dynamics_contact_id",
    "entra_object_id",
    "deactivated_by_sync_at",
]
UUID_FIELDS = ("dynamics_systemuser_id", "dynamics_contact_id", "entra_object_id")


class Command(BaseCommand):
    help = "List a company's users: `users list COMPANY [--json]`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="List the company's users.")
        listing.add_argument("company", help="The company's slug.")
        listing.add_argument("--json", action="store_true", help="Print one JSON array.")

    def handle(self, *args, action, company, json: bool = False, **options):
        try:
            company = company_or_error(company)
        except CommandError as exc:
            if json:
                # A failure is one JSON object too, so a script can always parse the output.
                self.stdout.write(json_dumps({"error": str(exc)}))
            raise
        rows = company.users.order_by("email").values(*FIELDS)
        if json:
            self._write_json(rows)
            return
        for row in rows.iterator():
            state = "active" if row["is_active"] else "inactive"
            self.stdout.write(
                f"{row['email']}\t{row['first_name']} {row['last_name']}\t{state}\t{row['created_source']}"
            )

    def _write_json(self, rows):
        # Streamed, so a company of a million users doesn't need them all in memory.
        self.stdout.write("[", ending="")
        for i, row in enumerate(rows.iterator(chunk_size=2000)):
            for key in UUID_FIELDS:
                row[key] = str(row[key]) if row[key] else None
            if row["deactivated_by_sync_at"]:
                row["deactivated_by_sync_at"] = row["deactivated_by_sync_at"].isoformat()
            self.stdout.write(("," if i else "") + json_dumps(row), ending="")
        self.stdout.write("]")


def json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
