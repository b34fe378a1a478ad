from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from .models import CaseFolded, User


class EmailBackend(ModelBackend):
    """Sign in by email and password.

    An email is unique within a company, not across companies; the password tells the
    accounts apart. Users an integration created have no password until they set one.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        # The email compared as the (email ignoring case, company) index has it; iexact
        # can't use that index.
        candidates = User.objects.annotate(email_key=CaseFolded("email")).filter(
            email_key=username.strip().lower(), is_active=True
        )[:10]
        matches = [u for u in candidates if u.has_usable_password() and u.check_password(password)]
        if len(matches) == 1:
            return matches[0]
        # Run the hasher once anyway so a missing account takes as long as a wrong password.
        if not candidates:
            User().set_password(password)
        return None
