import json

from django.core.management.base import BaseCommand

from learnexa.accounts.commands import company_or_error

FIELDS = [
    "email",
    "first_name",
    "last_name",
    "job_title",
    "phone",
    "city",
    "country",
    "is_active",
    "created_source",
    "dynamics_systemuser_id",
    "entra_object_id",
]


class Command(BaseCommand):
    help = "List a company's users: `users list COMPANY [--json]`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="List the company's users.")
        listing.add_argument("company", help="The company's slug.")
        listing.add_argument("--json", action="store_true", help="Print one JSON array.")

    def handle(self, *args, action, company, json: bool = False, **options):
        company = company_or_error(company)
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
            for key in ("dynamics_systemuser_id", "entra_object_id"):
                row[key] = str(row[key]) if row[key] else None
            self.stdout.write(("," if i else "") + json_dumps(row), ending="")
        self.stdout.write("]")


def json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
