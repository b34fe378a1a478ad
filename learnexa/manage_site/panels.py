"""Places where integrations add to the Manage site pages, so that the core never depends
on them: each panel is a function returning a template and its context, or None."""

from __future__ import annotations

from collections.abc import Callable

Panel = Callable[..., "tuple[str, dict] | None"]

dashboard_panels: list[Panel] = []
user_panels: list[Panel] = []
# Each returns [(message, url)] for the banner shown to a company's site admins on every page.
banners: list[Callable[..., list[tuple[str, str]]]] = []


def render_panels(panels: list[Panel], *args) -> list[tuple[str, dict]]:
    return [p for p in (panel(*args) for panel in panels) if p is not None]
