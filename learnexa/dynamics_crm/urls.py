from django.urls import path

from . import (
    audit_views,
    callback,
    holds_views,
    mapping_views,
    oauth,
    run_views,
    views,
    webhook_views,
)

app_name = "dynamics_crm"
urlpatterns = [
    path("", views.integration, name="integration"),
    path("disconnect/", views.disconnect, name="disconnect"),
    path("sign-in/", oauth.start, name="sign_in"),
    # The redirect URI registered on the app registration: keep it exactly as it is.
    path("authenticate", callback.authenticate, name="authenticate"),
    path("sync/", views.sync_now, name="sync_now"),
    path("lookup/", views.lookup, name="lookup"),
    path("mapping/", mapping_views.mapping_page, name="mapping"),
    path("test/", views.check_connection, name="test_connection"),
    path("schedule/resume/", views.resume_schedule, name="resume_schedule"),
    path("runs/", run_views.run_list, name="run_list"),
    path("runs/<int:run_id>/", run_views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status/", run_views.run_status, name="run_status"),
    path("runs/<int:run_id>/changes.csv", run_views.run_changes_csv, name="run_changes_csv"),
    path("runs/<int:run_id>/held/", holds_views.decide_held, name="decide_held"),
    path("holds/", holds_views.inbox, name="holds"),
    path("holds/decide/", holds_views.decide, name="decide_holds"),
    path("audit/", audit_views.audit_trail, name="audit"),
    # Where Dynamics posts (WebhookKey: ?code=<key>); no session.
    path("webhook/<str:webhook_id>/", webhook_views.receive, name="webhook"),
    path("webhook-key/rotate/", webhook_views.rotate, name="webhook_rotate"),
    path("webhook-key/show/", webhook_views.show_key, name="webhook_show_key"),
    path("webhook-register/", webhook_views.register, name="webhook_register"),
]
