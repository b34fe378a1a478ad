from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from learnexa.accounts.models import User

from .access import site_admin_required


@site_admin_required
def dashboard(request):
    company = request.company
    setting = getattr(company, "dynamics_crm_setting", None)
    context = {
        "setting": setting,
        "last_run": setting.runs.first() if setting else None,
        "user_count": company.users.count(),
        "active_count": company.users.filter(is_active=True).count(),
    }
    return render(request, "manage_site/dashboard.html", context)


@site_admin_required
def users(request):
    users = User.objects.filter(company=request.company).order_by("last_name", "first_name", "id")
    query = request.GET.get("q", "").strip()
    source = request.GET.get("source", "")
    if query:
        users = users.filter(
            Q(email__icontains=query)
            | Q(first_name__icontains=query)
            | Q(last_name__icontains=query)
        )
    if source in User.Source.values:
        users = users.filter(created_source=source)
    page = Paginator(users, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "manage_site/users.html",
        {"page": page, "query": query, "source": source, "sources": User.Source.choices},
    )
