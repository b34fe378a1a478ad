"""A learner's own pages: their home page, changing their password, accepting an invitation
(setting a password from an emailed link), and asking for a new link."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from . import invitations
from .login import client_ip
from .models import User
from .sign_in import may_receive_link


@login_required
def home(request):
    user = request.user
    if user.is_site_admin:
        return redirect("manage_site:dashboard")
    company = user.company
    return render(
        request,
        "accounts/home.html",
        {
            "person": user,
            "company": company,
            "from_integration": user.created_source == User.Source.DYNAMICS_CRM
            or bool(user.dynamics_systemuser_id or user.dynamics_contact_id),
            "site_admins": list(
                company.site_admins().order_by("email").values_list("email", flat=True)[:3]
            ),
            "can_change_password": user.has_usable_password(),
        },
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's (which keeps this session with update_session_auth_hash), for people who
    have a password; back to their page afterwards."""

    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("home")

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.has_usable_password():
            return redirect("home")
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


class AcceptInvitationView(auth_views.PasswordResetConfirmView):
    """Set a password from an invitation link, then be signed in. The link works once: the
    new password (and the sign-in) change what its token was made from."""

    token_generator = invitations.invitation_tokens
    template_name = "accounts/accept_invitation.html"
    post_reset_login = True
    post_reset_login_backend = "learnexa.accounts.backends.EmailBackend"
    success_url = reverse_lazy("home")
    title = "Set your password"

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        # Inactive people, and people whose company has them sign in elsewhere (or not yet),
        # get no password, whatever link they hold.
        if user is None or not user.is_active or not may_receive_link(user):
            return None
        return user

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set, and you are signed in.")
        return response


@require_POST
def login_link(request):
    """Email a link to set a password to the accounts that may have one; the answer is the
    same whether or not an account has this email."""
    email = request.POST.get("email", "").strip()[:254]
    invitations.request_links(email, ip=client_ip(request), base_url=invitations.base_url(request))
    return render(request, "registration/link_sent.html", {"email": email})
