"""When a company's schedule next falls due: pure calendar arithmetic, in the company's time
zone, for the settings model and the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import models


class Frequency(models.TextChoices):
    OFF = "off", "Only when started by hand"
    HOURLY = "hourly", "Every hour"
    DAILY = "daily", "Every day"
    WEEKLY = "weekly", "Every week"
    MONTHLY = "monthly", "Every month"


def next_run_at(setting, after: datetime) -> datetime | None:
    """The first moment after `after` that a DynamicsCrmSetting's schedule names, in its
    company's time zone."""
    if setting.sync_frequency == Frequency.OFF:
        return None
    try:
        zone = ZoneInfo(setting.company.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = after.astimezone(zone)
    at = setting.sync_time
    if setting.sync_frequency == Frequency.HOURLY:
        candidate = local.replace(minute=at.minute, second=0, microsecond=0)
        step = timedelta(hours=1)
    else:
        candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        step = timedelta(days=1)
        if setting.sync_frequency == Frequency.WEEKLY:
            candidate += timedelta(days=(setting.sync_weekday - candidate.weekday()) % 7)
            step = timedelta(weeks=1)
        elif setting.sync_frequency == Frequency.MONTHLY:
            candidate = candidate.replace(day=setting.sync_monthday)
            if candidate <= local:
                year, month = divmod(candidate.month, 12)
                candidate = candidate.replace(year=candidate.year + year, month=month + 1)
            return _aware(candidate, zone)
    while candidate <= local:
        candidate += step
    return _aware(candidate, zone)


def _aware(local: datetime, zone: ZoneInfo) -> datetime:
    # Arithmetic on a zoneinfo datetime keeps the wall time across daylight-saving changes;
    # the offset is worked out afresh for the result.
    return local.replace(tzinfo=zone).astimezone(UTC)
