import zoneinfo

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from learnexa.accounts.models import Company


class Command(BaseCommand):
    help = "Manage companies. `company add SLUG --name NAME` creates one."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create a company.")
        add.add_argument("slug", help="Short name used on the command line, e.g. acme.")
        add.add_argument("--name", required=True, help="The company's display name.")
        add.add_argument(
            "--time-zone", default="UTC", help="An IANA time zone, e.g. Europe/Paris (default UTC)."
        )

    def handle(self, *args, action, slug, name, time_zone, **options):
        company = Company(slug=slug, name=name.strip(), time_zone=time_zone)
        try:
            # The model's own limits (lengths, slug characters), one line per problem; the
            # slug's uniqueness is left to the database, which can't race.
            company.full_clean(validate_unique=False)
        except ValidationError as exc:
            raise CommandError(
                " ".join(
                    f"{field.replace('_', ' ')}: {message}"
                    for field, messages in exc.message_dict.items()
                    for message in messages
                )
            ) from None
        if slugify(slug) != slug:
            raise CommandError(
                f"'{slug}' isn't a valid slug: use lowercase letters, digits and hyphens."
            )
        # Only real IANA zones: the schedule computes each company's sync times in it.
        if time_zone not in zoneinfo.available_timezones():
            raise CommandError(
                f"'{time_zone}' isn't a time zone: use an IANA name such as Europe/Paris or UTC."
            )
        try:
            with transaction.atomic():
                company.save()
        except IntegrityError as exc:
            raise CommandError(f"A company with the slug '{slug}' already exists.") from exc
        self.stdout.write(f"Created company {company.slug} ({company.name}).")
