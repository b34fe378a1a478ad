from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from .models import User


class EmailBackend(ModelBackend):
    """Sign in by email and password.

    An email is unique within a company, not across companies; the password tells the
    accounts apart. Users an integration created have no password until they set one.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        candidates = User.objects.with_email(username).filter(is_active=True)[:10]
        matches = [u for u in candidates if u.has_usable_password() and u.check_password(password)]
        if len(matches) == 1:
            return matches[0]
        # Run the hasher once anyway so a missing account takes as long as a wrong password.
        if not candidates:
            User().set_password(password)
        return None
