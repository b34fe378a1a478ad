"""What the command-line commands about companies share, the integration's included."""

from django.core.management.base import CommandError

from learnexa.accounts.models import Company


def company_or_error(slug: str) -> Company:
    company = Company.objects.filter(slug=slug).first()
    if company is None:
        raise CommandError(
            f"No company with the slug '{slug}'. Create it with: learnexa company add {slug} --name NAME"
        )
    return company
