from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render

from learnexa.accounts.models import User

from .access import site_admin_required
from .panels import dashboard_panels, render_panels, user_panels

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


FILTERS = {
    "status": {"active": Q(is_active=True), "inactive": Q(is_active=False)},
    "link": {
        "linked": Q(dynamics_systemuser_id__isnull=False),
        "unlinked": Q(dynamics_systemuser_id__isnull=True),
    },
}


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
    for name, options in FILTERS.items():
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
        "dynamics_systemuser_id",
    )
    if query:
        # A substring search can't use an index: counting every match would scan the table a
        # second time, so a search pages by looking one row ahead instead.
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
            "query": query,
            "source": source,
            "sources": User.Source.choices,
            "chosen": chosen,
            "total": total,
            "querystring": params.urlencode(),
        },
    )


@site_admin_required
def user_detail(request, user_id: int):
    user = get_object_or_404(User, pk=user_id, company=request.company)
    return render(
        request,
        "manage_site/user.html",
        {"person": user, "panels": render_panels(user_panels, request, user)},
    )
