from django.urls import path

from . import views

app_name = "manage_site"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("users/", views.users, name="users"),
    path("users/<int:user_id>/", views.user_detail, name="user_detail"),
    path("users/<int:user_id>/invite/", views.invite_user, name="invite_user"),
    path("users/<int:user_id>/deactivate/", views.deactivate_user, name="deactivate_user"),
    path("users/<int:user_id>/reactivate/", views.reactivate_user, name="reactivate_user"),
]
