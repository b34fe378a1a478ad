"""The Dynamics 365 integration's state: one settings row per company (setting.py), and its
sync runs with their per-user changes (runs.py), and what admins did (audit.py)."""

from .audit import AuditEvent
from .runs import JSONTextField, SeenRecord, SyncChange, SyncRun
from .setting import (
    DynamicsCrmSetting,
    lease_duration,
    validate_authority_host,
    validate_client_id,
    validate_organization_uri,
    validate_tenant_id,
)
from .webhook import WebhookCounter

__all__ = [
    "AuditEvent",
    "DynamicsCrmSetting",
    "JSONTextField",
    "SeenRecord",
    "SyncChange",
    "SyncRun",
    "lease_duration",
    "validate_authority_host",
    "validate_client_id",
    "validate_organization_uri",
    "validate_tenant_id",
    "WebhookCounter",
]
