"""How each person signs in, decided from the account alone (the sign-in page asks for the
email first, then takes the person the right way).

The core knows two ways: a password, and a link by email to set one (an invitation). An
integration that brings people in may know a third for its people (the Dynamics 365
integration: Microsoft sign-in in the company's tenant) or hold them back for now; it
registers a function in `methods` (from its AppConfig.ready) that answers for the users it
brought in and returns None for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .models import User

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

PASSWORD = "password"
INVITATION = "invitation"
NOT_YET = "not_yet"


@dataclass(frozen=True)
class External:
    """Sign in elsewhere: `start(request, user, next_url)` sends the browser there."""

    label: str
    start: Callable[[HttpRequest, User, str], HttpResponse]


Method = External | str
methods: list[Callable[[User], Method | None]] = []
# Each returns the origins an External may send the browser to from the sign-in page.
redirect_origins: list[Callable[[], list[str]]] = []


def method_for(user: User) -> Method:
    """How `user` signs in: an External, PASSWORD, INVITATION (no password yet: a link to
    set one), or NOT_YET (their company hasn't opened sign-in to them)."""
    if not user.is_site_admin:  # site admins always use their password
        for method in methods:
            answer = method(user)
            if isinstance(answer, External) or answer == NOT_YET:
                return answer
    return PASSWORD if user.has_usable_password() else INVITATION


def may_receive_link(user: User) -> bool:
    """Whether a link to set a password may be emailed to `user`: an active person whose
    company lets them sign in with a password."""
    return user.is_active and method_for(user) in (PASSWORD, INVITATION)


@dataclass(frozen=True)
class Route:
    """Where the sign-in page takes an email: the password step, one or more accounts that
    sign in elsewhere (an email may belong to people of several companies), or a link by
    email (also the answer for an email nobody has, so that it reveals nothing)."""

    password: bool = False
    external: tuple[tuple[User, External], ...] = ()


def route(email: str, company_slug: str = "") -> Route:
    people = User.objects.with_email(email).filter(is_active=True)
    if company_slug:
        people = people.filter(company__slug=company_slug)
    chosen = [(user, method_for(user)) for user in people.select_related("company")[:10]]
    if any(method == PASSWORD for _, method in chosen):
        return Route(password=True)
    return Route(
        external=tuple((user, method) for user, method in chosen if isinstance(method, External))
    )
