import getpass
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from learnexa.accounts.commands import company_or_error
from learnexa.accounts.models import User


class Command(BaseCommand):
    help = (
        "Manage site admins. `siteadmin add COMPANY EMAIL` makes EMAIL a site admin of the "
        "company (creating the user if needed); the password is read from standard input, "
        "or asked for on a terminal."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a site admin.")
        add.add_argument("company", help="The company's slug.")
        add.add_argument("email")

    def handle(self, *args, action, company, email, **options):
        company = company_or_error(company)
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"'{email}' isn't a valid email address.") from exc
        password = self._read_password()
        user = User.objects.for_email(company, email).first() or User(company=company, email=email)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        user.is_site_admin = True
        user.is_active = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"{user.email} is a site admin of {company.slug}.")

    def _read_password(self) -> str:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords don't match.")
        else:
            password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError(
                "No password given: pipe it on standard input or type it at the prompt."
            )
        return password
