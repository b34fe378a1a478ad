from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from learnexa.accounts.login import LoginView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="manage_site:dashboard"), name="home"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("manage/", include("learnexa.manage_site.urls")),
    path("dynamics_crm/", include("learnexa.dynamics_crm.urls")),
]
