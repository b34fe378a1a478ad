from django.urls import path

from . import views

app_name = "dynamics_crm"
urlpatterns = [
    path("", views.integration, name="integration"),
    path("sync/", views.sync_now, name="sync_now"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status/", views.run_status, name="run_status"),
]
