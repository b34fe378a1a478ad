from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied


def site_admin_required(view):
    """Only a signed-in site admin of a company; the view works on `request.company` alone."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_site_admin:
            raise PermissionDenied("Only site admins can manage the site.")
        request.company = request.user.company
        return view(request, *args, **kwargs)

    return wrapper
