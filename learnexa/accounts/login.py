"""Sign-in at /login/, identifier-first: the page asks for the email alone, then takes the
person the way their account signs in (accounts.sign_in): the password step; their company's
sign-in elsewhere (Microsoft); or, without a password yet, a link by email to set one, which
is also the answer for an email nobody has, so that the page reveals nothing about it.

Passwords have a limit on guessing: after too many failures for an email, or from an
address, further attempts are refused for a while, whatever the password."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.shortcuts import render
from django.utils import timezone
from django.utils.csp import CSP
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from . import invitations, sign_in
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

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        # The email step may redirect to a company's sign-in elsewhere, and Chromium checks a
        # form's redirects against form-action too.
        origins = [origin for source in sign_in.redirect_origins for origin in source()]
        response._csp_config = {
            **settings.SECURE_CSP,
            "form-action": [CSP.SELF, *dict.fromkeys(origins)],
        }
        return response

    def post(self, request, *args, **kwargs):
        if "password" in request.POST:
            return super().post(request, *args, **kwargs)
        email = (request.POST.get("username") or "").strip()
        try:
            validate_email(email)
        except ValidationError:
            return self._step(
                "email", email, error="Enter your email address, such as name@company.com."
            )
        found = sign_in.route(email, request.POST.get("company", ""))
        if found.password:
            return self._step("password", email)
        if len(found.external) == 1:
            user, method = found.external[0]
            return method.start(request, user, self.get_redirect_url())
        if found.external:
            return self._step("choose", email, accounts=found.external)
        invitations.request_links(
            email, ip=client_ip(request), base_url=invitations.base_url(request)
        )
        return render(request, "registration/link_sent.html", {"email": email})

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("step", "password" if context["form"].is_bound else "email")
        return context

    def _step(self, step: str, email: str, **context):
        form = self.get_form_class()(self.request, initial={"username": email})
        return self.render_to_response(self.get_context_data(form=form, step=step, **context))
