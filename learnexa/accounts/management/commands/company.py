import json as json_module

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils.text import slugify

from learnexa.accounts.models import Company, time_zones


class Command(BaseCommand):
    help = (
        "Manage companies. `company add SLUG --name NAME` creates one; `company list [--json]` "
        "lists them with their slugs."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create a company.")
        add.add_argument("slug", help="Short name used on the command line, e.g. acme.")
        add.add_argument("--name", required=True, help="The company's display name.")
        add.add_argument(
            "--time-zone", default="UTC", help="An IANA time zone, e.g. Europe/Paris (default UTC)."
        )
        listing = sub.add_parser("list", help="List the companies.")
        listing.add_argument("--json", action="store_true", help="Print one JSON array.")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_list(self, *, json: bool = False, **options):
        companies = Company.objects.annotate(
            users_count=Count("users"),
            active_users_count=Count("users", filter=Q(users__is_active=True)),
        ).order_by("slug")
        rows = [
            {
                "slug": company.slug,
                "name": company.name,
                "time_zone": company.time_zone,
                "users": company.users_count,
                "active_users": company.active_users_count,
                "created_at": company.created_at.isoformat(),
            }
            for company in companies
        ]
        if json:
            self.stdout.write(json_module.dumps(rows, ensure_ascii=False))
            return
        if not rows:
            self.stdout.write(
                "No companies yet: create one with `learnexa company add SLUG --name NAME`."
            )
            return
        for row in rows:
            self.stdout.write(
                f"{row['slug']}\t{row['name']}\t{row['time_zone']}\t"
                f"{row['active_users']} active of {row['users']} users"
            )

    def handle_add(self, *, slug, name, time_zone, **options):
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
        if time_zones().get(time_zone.lower()) != time_zone:
            raise CommandError(
                f"'{time_zone}' isn't a time zone: use an IANA name such as Europe/Paris or UTC."
            )
        try:
            with transaction.atomic():
                company.save()
        except IntegrityError as exc:
            raise CommandError(f"A company with the slug '{slug}' already exists.") from exc
        self.stdout.write(f"Created company {company.slug} ({company.name}).")
