"""Sign-in with a limit on guessing: after too many failures for an email, or from an
address, further attempts are refused for a while, whatever the password."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from .models import FailedLogin

WINDOW = timedelta(minutes=15)
MAX_PER_EMAIL = 5
MAX_PER_ADDRESS = 50


def client_ip(request) -> str | None:
    """The address the sign-in came from. Behind the proxies LEARNEXA_BEHIND_PROXY says are
    there, REMOTE_ADDR is the nearest proxy's, shared by everyone: the client's is then the
    address the outermost trusted proxy appended to X-Forwarded-For, the Nth from the right
    for N proxies (entries left of it are whatever the client sent, so never trusted)."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.LEARNEXA_TRUSTED_PROXIES if settings.LEARNEXA_BEHIND_PROXY else 0
    if proxies < 1:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-proxies]))
    except ValueError:
        return remote


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password don't match an account. Check both and try again.",
        "throttled": "Too many failed attempts. Wait 15 minutes, then try again.",
    }

    def clean(self):
        email = (self.data.get("username") or "").strip().lower()
        ip = client_ip(self.request) if self.request else None
        since = timezone.now() - WINDOW
        recent = FailedLogin.objects.filter(at__gte=since)
        if recent.filter(email=email).count() >= MAX_PER_EMAIL or (
            ip and recent.filter(ip=ip).count() >= MAX_PER_ADDRESS
        ):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            return super().clean()
        except forms.ValidationError:
            FailedLogin.objects.create(email=email[:254], ip=ip)
            FailedLogin.objects.filter(at__lt=since).delete()
            raise


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
