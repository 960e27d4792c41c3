"""Reading time from server-stamped events: wall and active seconds, idle, hidden, tabs, crashes."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reading.timing import Event, reading_time

T0 = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)


def ev(kind, seconds, tab="a"):
    return Event(kind, tab, T0 + timedelta(seconds=seconds))


def test_simple_read_counts_everything_between_open_and_submit():
    events = [ev("opened", 0), ev("image_shown", 1), ev("heartbeat", 15), ev("heartbeat", 30), ev("submitted", 40)]
    t = reading_time(events, gap_cap_seconds=30)
    assert t.wall_seconds == 40 and t.active_seconds == 40


def test_hidden_and_idle_time_is_not_active():
    events = [ev("opened", 0), ev("hidden", 10), ev("visible", 110), ev("heartbeat", 125), ev("idle", 130),
              ev("resumed", 200), ev("submitted", 210)]
    t = reading_time(events, gap_cap_seconds=30)
    assert t.wall_seconds == 210
    assert t.active_seconds == 10 + 20 + 10


def test_a_second_tab_does_not_double_count():
    events = [ev("opened", 0, "a"), ev("heartbeat", 15, "a"), ev("opened", 5, "b"), ev("heartbeat", 20, "b"),
              ev("heartbeat", 30, "a"), ev("submitted", 30, "a")]
    t = reading_time(events, gap_cap_seconds=30)
    assert t.active_seconds == 30


def test_a_crashed_tab_counts_only_up_to_the_cap_after_its_last_sign_of_life():
    # tab a dies at 15 s (no more events); the reader comes back in tab b ten minutes later
    events = [ev("opened", 0, "a"), ev("heartbeat", 15, "a"), ev("opened", 600, "b"), ev("submitted", 630, "b")]
    t = reading_time(events, gap_cap_seconds=30)
    assert t.active_seconds == 15 + 30 + 30
    assert t.wall_seconds == 630


def test_reload_in_the_same_tab_continues_the_same_session():
    events = [ev("opened", 0), ev("heartbeat", 15), ev("opened", 20), ev("heartbeat", 35), ev("submitted", 40)]
    assert reading_time(events, gap_cap_seconds=30).active_seconds == 40


def test_events_after_submission_are_ignored():
    events = [ev("opened", 0), ev("submitted", 20), ev("heartbeat", 25), ev("visible", 90)]
    t = reading_time(events, gap_cap_seconds=30)
    assert t.active_seconds == 20 and t.wall_seconds == 20


def test_unsubmitted_read_is_measured_up_to_now():
    events = [ev("opened", 0), ev("heartbeat", 15)]
    t = reading_time(events, gap_cap_seconds=30, until=T0 + timedelta(seconds=20))
    assert t.active_seconds == 20


def test_no_events_means_no_time():
    assert reading_time([], gap_cap_seconds=30).active_seconds == 0


def test_a_save_arriving_after_hidden_does_not_restart_the_clock():
    events = [ev("opened", 0), ev("hidden", 10), ev("autosaved", 11), ev("visible", 100), ev("submitted", 110)]
    assert reading_time(events, gap_cap_seconds=30).active_seconds == 20


def test_a_save_while_active_is_a_sign_of_life():
    events = [ev("opened", 0), ev("autosaved", 25), ev("autosaved", 50), ev("submitted", 70)]
    assert reading_time(events, gap_cap_seconds=30).active_seconds == 70


def test_the_clock_starts_at_the_servers_first_delivery_even_if_opened_is_reported_late():
    delivered = T0
    events = [ev("opened", 25), ev("heartbeat", 40), ev("submitted", 50)]
    t = reading_time(events, gap_cap_seconds=30, delivered=delivered)
    assert t.wall_seconds == 50 and t.active_seconds == 50


def test_a_delivery_adds_no_activity_the_reader_did_not_show():
    # opened long after the delivery (beyond the gap cap): the wall clock starts at the delivery, the active time
    # only where the tab was active; hidden and back later: the hidden time is not counted
    events = [ev("opened", 60), ev("hidden", 65), ev("visible", 600), ev("submitted", 610)]
    t = reading_time(events, gap_cap_seconds=30, delivered=T0)
    assert t.wall_seconds == 610 and t.active_seconds == 15
    events = [ev("opened", 0.5), ev("hidden", 5), ev("visible", 600), ev("submitted", 610)]
    assert reading_time(events, gap_cap_seconds=30, delivered=T0).active_seconds == 15
