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
        add.add_argument("--time-zone", default="UTC")

    def handle(self, *args, action, slug, name, time_zone, **options):
        if slugify(slug) != slug:
            raise CommandError(
                f"'{slug}' isn't a valid slug: use lowercase letters, digits and hyphens."
            )
        try:
            with transaction.atomic():
                company = Company.objects.create(slug=slug, name=name, time_zone=time_zone)
        except IntegrityError as exc:
            raise CommandError(f"A company with the slug '{slug}' already exists.") from exc
        self.stdout.write(f"Created company {company.slug} ({company.name}).")
