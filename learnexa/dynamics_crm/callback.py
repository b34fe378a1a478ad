"""The redirect URI, `/dynamics_crm/authenticate`, that both Microsoft flows share, so that
an admin registers a single address on the app registration. The state tells them apart: a
learner signing in (learner_sign_in.py) or an admin connecting the integration (oauth.py).
"""

from __future__ import annotations

from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import learner_sign_in, oauth


@never_cache
@require_GET
def authenticate(request):
    # Anyone but a site admin is answered as a learner, so that a stray or replayed callback
    # gets the sign-in page's refusal, not a 403.
    user = request.user
    if learner_sign_in.owns(request, request.GET.get("state", "")) or not (
        user.is_authenticated and user.is_site_admin
    ):
        return learner_sign_in.complete(request)
    return oauth.connected(request)
