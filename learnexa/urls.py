from django.contrib.auth import views as auth_views
from django.urls import include, path

from learnexa.accounts import views as account_views
from learnexa.accounts.login import LoginView
from learnexa.ops import views as ops_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("login/", LoginView.as_view(), name="login"),
    path("login/link/", account_views.login_link, name="login_link"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "invitation/<uidb64>/<token>/",
        account_views.AcceptInvitationView.as_view(),
        name="accept_invitation",
    ),
    path("manage/", include("learnexa.manage_site.urls")),
    path("dynamics_crm/", include("learnexa.dynamics_crm.urls")),
    # Operations: a load balancer's probes, Prometheus (README, "Running it in production").
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
]

# The 500 page, with the request's id to quote.
handler500 = "learnexa.ops.views.server_error"
