from __future__ import annotations

import logging

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from learnexa.accounts import invitations, sign_in
from learnexa.accounts.access import site_admin_required
from learnexa.accounts.models import User

from .panels import dashboard_panels, render_panels, user_columns, user_panels

logger = logging.getLogger(__name__)

PAGE_SIZE = 50


class LookaheadPage:
    """A page of results found without counting them all: one extra row tells if there is
    a next page."""

    def __init__(self, queryset, number):
        try:
            self.number = max(1, int(number or 1))
        except (TypeError, ValueError):
            self.number = 1
        start = (self.number - 1) * PAGE_SIZE
        rows = list(queryset[start : start + PAGE_SIZE + 1])
        self.object_list = rows[:PAGE_SIZE]
        self.has_next = len(rows) > PAGE_SIZE
        self.has_previous = self.number > 1
        self.next_page_number = self.number + 1
        self.previous_page_number = self.number - 1
        self.start_index = start + 1 if rows else 0
        self.end_index = start + len(self.object_list)

    def __iter__(self):
        return iter(self.object_list)

    def has_other_pages(self):
        return self.has_next or self.has_previous


@site_admin_required
def dashboard(request):
    company = request.company
    totals = company.users.aggregate(
        users=Count("id"), active=Count("id", filter=Q(is_active=True))
    )
    by_source = dict(company.users.values_list("created_source").annotate(n=Count("id")).order_by())
    sources = [(label, by_source.get(value, 0)) for value, label in User.Source.choices]
    context = {**totals, "sources": sources, "panels": render_panels(dashboard_panels, request)}
    return render(request, "manage_site/dashboard.html", context)


FILTERS = {"status": {"active": Q(is_active=True), "inactive": Q(is_active=False)}}


def _filters() -> dict[str, dict[str, Q]]:
    """The list's filters: its own, and one per column an integration added."""
    added = {c.key: {value: q for value, (_, q) in c.choices.items()} for c in user_columns}
    return {**FILTERS, **added}


@site_admin_required
def users(request):
    users = User.objects.filter(company=request.company)
    query = request.GET.get("q", "").strip()[:200]
    if query:
        users = users.filter(
            Q(email__icontains=query)
            | Q(first_name__icontains=query)
            | Q(last_name__icontains=query)
        )
    source = request.GET.get("source", "")
    if source in User.Source.values:
        users = users.filter(created_source=source)
    chosen = {}
    for name, options in _filters().items():
        value = request.GET.get(name, "")
        if value in options:
            users = users.filter(options[value])
            chosen[name] = value
    # The index on (company, last_name, first_name) serves this order.
    users = users.order_by("last_name", "first_name", "id").only(
        "email",
        "first_name",
        "last_name",
        "job_title",
        "is_active",
        "created_source",
        *(field for column in user_columns for field in column.fields),
    )
    if query:
        # A substring search is served by pg_trgm indexes on PostgreSQL (accounts migration
        # 0010) but by no index on SQLite, and a common term matches many rows: counting
        # every match would read them a second time, so a search pages by looking one row
        # ahead instead.
        page = LookaheadPage(users, request.GET.get("page"))
        total = None
    else:
        page = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
        total = page.paginator.count
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "manage_site/users.html",
        {
            "page": page,
            "rows": [(user, [column.cell(user) for column in user_columns]) for user in page],
            "columns": [(column, chosen.get(column.key, "")) for column in user_columns],
            "query": query,
            "source": source,
            "sources": User.Source.choices,
            "chosen": chosen,
            "total": total,
            "querystring": params.urlencode(),
        },
    )


def sign_in_summary(user: User) -> str:
    """How `user` signs in, in words for their admin."""
    method = sign_in.method_for(user)
    if isinstance(method, sign_in.External):
        return f"With {method.label}"
    if method == sign_in.PASSWORD:
        return "With a password"
    if method == sign_in.INVITATION:
        if user.invitation_sent_at:
            return f"Invitation sent on {date_format(localtime(user.invitation_sent_at), 'DATETIME_FORMAT')}"
        return "No invitation sent yet"
    return "Not yet open to people from Dynamics 365"


def _person(request, user_id: int) -> User:
    return get_object_or_404(
        User.objects.select_related("company"), pk=user_id, company=request.company
    )


def _user_page(request, user: User, **context):
    return render(
        request,
        "manage_site/user.html",
        {
            "person": user,
            "sign_in": sign_in_summary(user),
            "may_invite": sign_in.may_receive_link(user),
            "is_self": user.pk == request.user.pk,
            "panels": render_panels(user_panels, request, user),
            **context,
        },
    )


@site_admin_required
def user_detail(request, user_id: int):
    return _user_page(request, _person(request, user_id))


@site_admin_required
@require_POST
def invite_user(request, user_id: int):
    """Email the person a link to set a password now, even if one went out a moment ago."""
    user = _person(request, user_id)
    if not sign_in.may_receive_link(user):
        messages.error(request, f"{user.email} can't be sent a link: {sign_in_summary(user)}.")
        return redirect("manage_site:user_detail", user_id=user.pk)
    try:
        invitations.send_invitation(user, base_url=invitations.base_url(request), force=True)
    except Exception:
        logger.exception("Could not email an invitation to user %s", user.pk)
        messages.error(
            request, f"The email to {user.email} could not be sent. Try again in a while."
        )
    else:
        messages.success(
            request,
            f"Sent {user.email} a link to set a password. It works once, for "
            f"{invitations.validity()}; any earlier link no longer works.",
        )
    return redirect("manage_site:user_detail", user_id=user.pk)


@site_admin_required
def deactivate_user(request, user_id: int):
    """Asks first (GET), then deactivates (POST): the person is signed out at their next
    request, and their links to set a password stop working for good."""
    user = _person(request, user_id)
    if user.pk == request.user.pk:
        messages.error(request, "You can't deactivate yourself.")
        return redirect("manage_site:user_detail", user_id=user.pk)
    if not user.is_active:
        return redirect("manage_site:user_detail", user_id=user.pk)
    if request.method != "POST":
        return _user_page(request, user, confirm_deactivate=True)
    user.set_active(False)
    messages.success(
        request, f"{user.email} is deactivated and signed out. They can't sign in any more."
    )
    return redirect("manage_site:user_detail", user_id=user.pk)


@site_admin_required
@require_POST
def reactivate_user(request, user_id: int):
    user = _person(request, user_id)
    if not user.is_active:
        user.set_active(True)
        note = (
            " Their old links no longer work: send them a new invitation if they need to set a password."
            if sign_in.may_receive_link(user) and not user.has_usable_password()
            else ""
        )
        messages.success(request, f"{user.email} is active again.{note}")
    return redirect("manage_site:user_detail", user_id=user.pk)
