from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render

from learnexa.accounts.models import User

from .access import site_admin_required
from .panels import dashboard_panels, render_panels, user_panels

PAGE_SIZE = 50


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
    page = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
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
