"""What site admins did to a company's integration, and when: kept with the sync history."""

from __future__ import annotations

from django.db import models

from learnexa.accounts.models import Company, User


class AuditEvent(models.Model):
    """One admin action on the integration. Never holds a secret's value: a changed secret is
    recorded as the field's name alone."""

    class Action(models.TextChoices):
        SETTINGS_SAVED = "settings_saved", "Settings saved"
        CONNECTED = "connected", "Connected"
        DISCONNECTED = "disconnected", "Disconnected"
        SYNC_STARTED = "sync_started", "Sync started"
        HOLD_APPROVED = "hold_approved", "Held deactivations approved"
        HOLD_REJECTED = "hold_rejected", "Held deactivations rejected"
        SCHEDULE_RESUMED = "schedule_resumed", "Schedule resumed"
        WEBHOOK_KEY_ROTATED = "webhook_key_rotated", "Webhook key rotated"
        WEBHOOK_KEY_SHOWN = "webhook_key_shown", "Webhook key shown"
        WEBHOOK_REGISTERED = "webhook_registered", "Webhook registered"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    # Kept when the admin is deleted: the email says who it was.
    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    summary = models.CharField(max_length=500, blank=True)
    # Names of the fields a save changed, people a decision covered, and the like.
    details = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey(
        "dynamics_crm.SyncRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["company", "-at"])]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_email or 'the system'}"
