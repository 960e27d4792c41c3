"""trial.events: announced once the write commits, never for a write that rolls back; upper apps subscribe."""
from __future__ import annotations

import pytest
from django.db import transaction

from trial import events


def test_upper_apps_subscribe_to_the_trial_events():
    enrolled = {entry[0][0] for entry in events.case_enrolled.receivers}  # (dispatch_uid, sender id) first
    changed = {entry[0][0] for entry in events.trial_status_changed.receivers}
    assert "ai.draft_on_enrolment" in enrolled
    assert {"reading.route_when_reading_starts", "scoring.build_when_scoring_starts"} <= changed


@pytest.mark.django_db(transaction=True)
def test_an_event_is_sent_after_the_commit_and_not_after_a_rollback():
    heard = []

    def listener(sender, **kwargs):
        heard.append(kwargs)

    events.case_enrolled.connect(listener, dispatch_uid="test.listener")
    try:
        with transaction.atomic():
            events.announce(events.case_enrolled, case_id=1)
            assert heard == []  # not before the commit
        assert heard == [{"signal": events.case_enrolled, "case_id": 1}]
        with pytest.raises(RuntimeError), transaction.atomic():
            events.announce(events.case_enrolled, case_id=2)
            raise RuntimeError("rolled back")
        assert len(heard) == 1
    finally:
        events.case_enrolled.disconnect(dispatch_uid="test.listener")


def test_status_changes_are_announced_with_the_new_and_previous_status(trial, site, investigator,
                                                                      django_capture_on_commit_callbacks):
    from trial import services

    heard = []
    events.trial_status_changed.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="test.status", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.transition_trial(trial=trial, by=investigator, to="enrolling")
    finally:
        events.trial_status_changed.disconnect(dispatch_uid="test.status")
    assert [(h["trial_id"], h["status"], h["previous"]) for h in heard] == [(trial.pk, "enrolling", "setup")]


def test_a_failing_receiver_leaves_the_committed_enrolment_whole(enrolling_trial, site, investigator,
                                                                 django_capture_on_commit_callbacks):
    """The write has committed when receivers run: one that fails (a broker down, a bug) is logged, the others
    still run, and nothing of the enrolment is undone (its files stay)."""
    from tests import dicom_corpus as corpus
    from trial import services
    from trial.models import Case

    heard = []

    def broken(sender, **kwargs):
        raise RuntimeError("the broker is down")

    events.case_enrolled.connect(broken, dispatch_uid="test.broken", weak=False)
    events.case_enrolled.connect(lambda sender, **kw: heard.append(kw["case_id"]), dispatch_uid="test.after",
                                 weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            case = services.enrol_case(trial=enrolling_trial, site=site, by=investigator,
                                       data=corpus.radiograph_bytes(seed=5))
    finally:
        events.case_enrolled.disconnect(dispatch_uid="test.broken")
        events.case_enrolled.disconnect(dispatch_uid="test.after")
    case = Case.objects.get(pk=case.pk)
    assert heard == [case.pk]
    assert case.dicom.storage.exists(case.dicom.name) and case.display_image.storage.exists(case.display_image.name)
