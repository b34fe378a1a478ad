from datetime import UTC, datetime, time

import pytest

from learnexa.accounts.models import Company
from learnexa.dynamics_crm.models import DynamicsCrmSetting
from learnexa.dynamics_crm.timetable import next_run_at


def schedule(frequency, *, tz="UTC", at=time(2, 0), weekday=0, monthday=1):
    company = Company(slug="x", name="X", time_zone=tz)
    return DynamicsCrmSetting(
        company=company,
        sync_frequency=frequency,
        sync_time=at,
        sync_weekday=weekday,
        sync_monthday=monthday,
    )


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "setting, after, expected",
    [
        (schedule("hourly", at=time(0, 15)), utc(2026, 11, 27, 10, 20), utc(2026, 11, 27, 11, 15)),
        (schedule("daily"), utc(2026, 11, 27, 1, 0), utc(2026, 11, 27, 2, 0)),
        (schedule("daily"), utc(2026, 11, 27, 2, 0), utc(2026, 11, 28, 2, 0)),
        # 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
        (schedule("daily", tz="Europe/Paris"), utc(2026, 11, 27, 12, 0), utc(2026, 11, 28, 1, 0)),
        (schedule("daily", tz="Europe/Paris"), utc(2026, 7, 1, 12, 0), utc(2026, 7, 2, 0, 0)),
        # The night clocks go forward, 03:00 in Paris is already summer time (UTC+2).
        (
            schedule("daily", tz="Europe/Paris", at=time(3, 0)),
            utc(2026, 3, 28, 12, 0),
            utc(2026, 3, 29, 1, 0),
        ),
        (schedule("weekly", weekday=4), utc(2026, 11, 27, 3, 0), utc(2026, 12, 4, 2, 0)),  # Friday
        (schedule("weekly", weekday=0), utc(2026, 11, 27, 3, 0), utc(2026, 11, 30, 2, 0)),
        (schedule("monthly", monthday=15), utc(2026, 11, 27, 3, 0), utc(2026, 12, 15, 2, 0)),
        (schedule("monthly", monthday=1), utc(2026, 12, 5, 3, 0), utc(2027, 1, 1, 2, 0)),
        (schedule("off"), utc(2026, 11, 27), None),
    ],
)
def test_the_next_run_is_the_schedules_next_moment_in_the_companys_time_zone(
    setting, after, expected
):
    assert next_run_at(setting, after) == expected
