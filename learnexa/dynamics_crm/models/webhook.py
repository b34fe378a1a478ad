"""The webhook's only trace: one counter row per company (see webhooks.py)."""

from __future__ import annotations

from django.db import models

from .setting import DynamicsCrmSetting


class WebhookCounter(models.Model):
    """How many webhook calls a company's address received, and what became of them. Nothing
    else of a call is kept: not its body, not who sent it."""

    setting = models.OneToOneField(
        DynamicsCrmSetting, on_delete=models.CASCADE, related_name="webhook_counter"
    )
    # Authenticated calls that queued (or joined) a sync.
    received = models.PositiveBigIntegerField(default=0)
    # Authenticated, but for another organization or table: answered 202, nothing done.
    ignored = models.PositiveBigIntegerField(default=0)
    # Authenticated, but refused: too big (413) or too many (429).
    refused = models.PositiveBigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The flood guard: calls counted in the current one-minute window.
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_count = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "dynamics_crm_webhook_counters"

    def __str__(self) -> str:
        return f"Webhook counter of {self.setting.company}"
