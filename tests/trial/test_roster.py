"""Readers' rosters: written as a site's rota reads, and applied by the platform at each shift's start and end in the
site's time zone; between two boundaries a reader's own switch stands."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import clock
from core.errors import ServiceError
from tests.live import committed, open_trial
from trial import roster, services
from trial.models import AuditEvent, Membership


def test_a_rota_is_parsed_as_it_reads_and_overnight_shifts_run_into_the_next_day():
    parsed = roster.parse("mon-fri 08:00-16:00; sat 08:00-12:00; sun 22:00-06:00")
    assert parsed["mon"] == [["08:00", "16:00"]] and "sat" in parsed and parsed["sun"] == [["22:00", "06:00"]]
    assert roster.parse(roster.text(parsed)) == parsed
    assert roster.parse("fri-mon 09:00-10:00").keys() == {"fri", "sat", "sun", "mon"}
    monday_9 = datetime(2026, 12, 7, 9, 0)      # a Monday
    assert roster.on_duty_at(parsed, monday_9)
    assert not roster.on_duty_at(parsed, monday_9.replace(hour=16))  # the end is not in the shift
    assert roster.on_duty_at(parsed, datetime(2026, 12, 7, 5, 59))  # Sunday's night shift, on Monday morning
    assert not roster.on_duty_at(parsed, datetime(2026, 12, 8, 5, 0))  # no night shift from Monday
    for bad in ("mon 8-16", "someday 08:00-10:00", "mon 25:00-26:00", "08:00-16:00"):
        with pytest.raises(roster.RosterError):
            roster.parse(bad)


@pytest.mark.django_db
def test_the_platform_puts_readers_on_and_off_duty_at_shift_boundaries_in_the_sites_time_zone(investigator,
                                                                                               make_user):
    live = open_trial(investigator=investigator, make_user=make_user, code="rota")
    member = Membership.objects.filter(trial=live.trial, role="reader").order_by("pk").first()
    # 07:30 UTC on a Monday is 08:30 in Berlin (winter): inside the shift
    start = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)
    now = [start]
    with clock.simulated(lambda: now[0]), committed():
        with pytest.raises(ServiceError, match="time zone"):
            services.set_roster(membership=member, by=investigator, roster_text="mon 08:00-16:00",
                                time_zone="Mars/Olympus")
        services.set_roster(membership=member, by=investigator, roster_text="mon 08:00-16:00",
                            time_zone="Europe/Berlin")
        member.refresh_from_db()
        assert member.on_duty and member.roster == {"mon": [["08:00", "16:00"]]}
        # the reader steps out during the shift: their own switch stands until the next boundary
        services.set_on_duty(membership=member, by=member.user, on_duty=False)
        now[0] = start.replace(hour=9)
        assert services.apply_rosters() == 0
        member.refresh_from_db()
        assert not member.on_duty
        # 16:00 Berlin passes (15:00 UTC): the shift ends — still off, nothing to change
        now[0] = start.replace(hour=15, minute=0, second=30)
        assert services.apply_rosters() == 0
        # off duty through the week (no shift until next Monday); next Monday 08:00:30 Berlin a shift starts: on duty
        now[0] = datetime(2026, 12, 14, 7, 0, 30, tzinfo=UTC)
        assert services.apply_rosters() == 1
        member.refresh_from_db()
        assert member.on_duty
    assert AuditEvent.objects.filter(action="reader.on_duty", actor__isnull=True,
                                     payload__by="roster").exists()
