"""Places where integrations add to the Manage site pages, so that the Manage site never
depends on them: panels (a function returning a template and its context, or None), links
in the navigation, banners, and columns of the Users list with a filter each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q

Panel = Callable[..., "tuple[str, dict] | None"]

dashboard_panels: list[Panel] = []
user_panels: list[Panel] = []
# Each returns [(message, url)] for the banner shown to a company's site admins on every page.
banners: list[Callable[..., list[tuple[str, str]]]] = []


# Each returns [(label, url)] for the navigation a site admin sees on every page.
navigation: list[Callable[[], list[tuple[str, str]]]] = []


@dataclass(frozen=True)
class UserColumn:
    """A column of the Users list, and the filter on it (`?{key}={choice}`)."""

    key: str
    heading: str
    fields: tuple[str, ...]  # what `cell` reads, loaded with the list
    cell: Callable[..., str]
    choices: dict[str, tuple[str, Q]]  # a choice → its label and its condition on users


user_columns: list[UserColumn] = []


def render_panels(panels: list[Panel], *args) -> list[tuple[str, dict]]:
    return [p for p in (panel(*args) for panel in panels) if p is not None]
