"""Experts' answers: quality scores, preferences and findings; corrections; every refusal writes nothing."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from core.errors import ServiceError
from reading import services as reading_services
from reading.models import Report
from scoring import selectors, services
from scoring.models import Assignment, FindingVote, Item, Preference, QualityScore
from tests.scoring.helpers import answer, answer_before, mine
from tests.signing import move
from trial.models import AuditEvent


def _nothing_written():
    return not QualityScore.objects.exists() and not Preference.objects.exists() and not FindingVote.objects.exists()


@pytest.fixture
def ready(scoring_trial):
    trial, readers, experts, cases = scoring_trial(n_cases=2)
    return trial, experts


def test_a_quality_score_is_stored_with_scale_subscores_radpeer_comment_and_server_times(ready):
    trial, experts = ready
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    services.open_assignment(assignment=quality, by=experts[0])
    score = services.submit_quality_score(assignment=quality, by=experts[0], overall=4, radpeer="2a",
                                          subscores={"accuracy": 5, "clarity": 3}, comment="Clear.")
    assert (score.version, score.overall, score.radpeer, score.subscores) == (1, 4, "2a", {"accuracy": 5, "clarity": 3})
    assert score.opened_at is not None and score.submitted_at >= score.opened_at
    event = AuditEvent.objects.get(action="scoring.quality_submitted")
    assert event.payload == {"assignment": quality.pk, "item": quality.item_id, "version": 1}  # no result in the log


def test_a_preference_is_stored_with_the_side_mapping(ready):
    trial, experts = ready
    pair = mine(experts[1], kind="pair")[0]
    answer_before(pair, experts[1])
    preference = services.submit_preference(assignment=pair, by=experts[1], choice="B", reason_text="More complete.")
    pair.refresh_from_db()
    assert preference.choice == "B" and pair.assisted_side in ("A", "B")
    rows = selectors.analysis_rows(trial)["preference"]
    row = next(r for r in rows if r["item"] == pair.item_id and r["expert"] == pair.expert.pseudonym)
    assert row["preferred_arm"] == ("standard" if pair.assisted_side == "A" else "assisted")
    assert row["left_arm"] == ("assisted" if pair.assisted_side == "A" else "standard")


def test_scoring_an_item_not_assigned_to_you_is_refused(ready):
    trial, experts = ready
    theirs = mine(experts[0], kind="reference")[0]
    with pytest.raises(services.NotAssigned, match="^This item is not assigned to you.$"):
        answer(theirs, experts[1])
    with pytest.raises(PermissionDenied, match="not assigned to you"):
        selectors.own_assignment(key=theirs.key, user=experts[1])
    assert _nothing_written()


def test_scoring_twice_is_refused_and_a_correction_needs_a_reason(ready):
    trial, experts = ready
    first = mine(experts[0], kind="reference")[0]
    answer(first, experts[0])
    with pytest.raises(services.AlreadyAnswered, match="already answered this item; an answer is final"):
        answer(first, experts[0])
    with pytest.raises(ServiceError, match="A correction needs a reason"):
        answer(first, experts[0], reason="  ")
    assert FindingVote.objects.count() == 1
    marks = {f: "present" for f in trial.findings}
    corrected = answer(first, experts[0], marks=marks, reason="Looked again at the left base.")
    assert corrected.version == 2 and corrected.correction_reason.startswith("Looked again")
    assert FindingVote.objects.filter(assignment=first).count() == 2  # the first version is kept
    with pytest.raises(PermissionError):
        corrected.save()


@pytest.mark.parametrize("values, message", [
    ({"overall": 6}, "The overall score must be a whole number from 1 to 5."),
    ({"overall": 0}, "The overall score must be a whole number from 1 to 5."),
    ({"overall": "4"}, "The overall score must be a whole number from 1 to 5."),
    ({"radpeer": "4"}, "The RADPEER score must be one of 1, 2a, 2b, 3a, 3b."),
    ({"subscores": {"accuracy": 9}}, "The accuracy score must be a whole number from 1 to 5."),
    ({"subscores": {"style": 3}}, "Unknown sub-score(s): style."),
])
def test_a_score_outside_the_scale_is_refused(ready, values, message):
    trial, experts = ready
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    with pytest.raises(ServiceError) as refused:
        answer(quality, experts[0], **values)
    assert refused.value.message == message
    assert not QualityScore.objects.exists()


def test_no_preference_only_where_the_trial_allows_it(ready):
    trial, experts = ready
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    type(trial).objects.filter(pk=trial.pk).update(allow_no_preference=False)
    pair = Assignment.objects.select_related("item__trial", "expert").get(pk=pair.pk)
    with pytest.raises(ServiceError, match="this trial has no “no preference” option"):
        answer(pair, experts[0], choice="none")
    with pytest.raises(ServiceError, match="Choose report A or report B"):
        answer(pair, experts[0], choice="left")
    assert not Preference.objects.exists()
    type(trial).objects.filter(pk=trial.pk).update(allow_no_preference=True)
    pair = Assignment.objects.select_related("item__trial", "expert").get(pk=pair.pk)
    assert answer(pair, experts[0], choice="none").choice == "none"


def test_findings_must_all_be_marked_with_a_known_mark(ready):
    trial, experts = ready
    first = mine(experts[0], kind="reference")[0]
    with pytest.raises(ServiceError, match="Mark every finding; missing: pneumothorax"):
        answer(first, experts[0], marks={f: "absent" for f in trial.findings if f != "pneumothorax"})
    with pytest.raises(ServiceError, match="Each finding is present, absent or uncertain"):
        answer(first, experts[0], marks={f: "maybe" for f in trial.findings})
    with pytest.raises(ServiceError, match="Unknown finding"):
        answer(first, experts[0], marks={**{f: "absent" for f in trial.findings}, "fracture": "present"})
    assert _nothing_written()


def test_an_item_opens_only_after_the_earlier_items_of_the_same_radiograph(ready):
    trial, experts = ready
    pair = mine(experts[0], kind="pair")[0]
    with pytest.raises(services.NotAvailable, match="Answer the earlier items of this radiograph"):
        answer(pair, experts[0])
    view = selectors.item_view(assignment=pair)
    assert view["reports"] == [] and view["image"] is None  # nothing of the case is sent before its turn
    answer_before(pair, experts[0])
    assert selectors.item_view(assignment=pair)["reports"]
    answer(pair, experts[0])


def test_answers_are_refused_once_the_trial_is_locked(ready, investigator):
    trial, experts = ready
    first = mine(experts[0], kind="reference")[0]
    move(trial, by=investigator, to="locked")
    first = Assignment.objects.select_related("item__trial", "expert").get(pk=first.pk)
    with pytest.raises(services.WrongStatus, match="Scoring is closed"):
        answer(first, experts[0])
    assert _nothing_written()


def test_a_preference_on_a_pair_whose_report_changed_is_refused_and_the_item_rebuilt(scoring_trial, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, move=False, code="ch")
    services.build_items(trial=trial, by=investigator)  # scoring may start while reading goes on
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    report = Report.objects.filter(read__case=cases[0], read__arm="standard").select_related("read__reader__user").get()
    reading_services.correct_report(read_id=report.read.pk, by=report.read.reader.user,
                                    findings="Large left effusion.", impression="Moderate left pleural effusion.",
                                    finding_flags={}, reason="Missed size.")
    with pytest.raises(services.ReportChanged) as refused:
        answer(pair, experts[0], choice="A")
    assert refused.value.message.startswith("A report in this item was corrected after the item was made, so your "
                                            "answer was not saved.")
    assert not Preference.objects.exists()
    old = Item.objects.get(pk=pair.item_id)
    assert old.superseded_at is not None and "corrected" in old.superseded_reason
    new = Item.objects.get(trial=trial, kind="pair", superseded_at__isnull=True)
    assert "Moderate left pleural effusion." in new.shown_reports.values_list("impression", flat=True)
    assert new.shown_reports.get(arm="standard").report_version == 2
    # the standard report's quality item was rebuilt too, the assisted one kept; the same panel
    assert Item.objects.filter(trial=trial, kind="quality", superseded_at__isnull=False).count() == 1
    panel = set(old.assignments.values_list("expert_id", flat=True))
    assert set(new.assignments.values_list("expert_id", flat=True)) == panel
    # the old link now says the item was replaced, and points to the new one
    view = selectors.item_view(assignment=selectors.own_assignment(key=pair.key, user=experts[0]))
    assert view["replaced"] and view["replacement_key"] == new.assignments.get(expert=pair.expert).key
    with pytest.raises(services.ItemSuperseded, match="open the new item from your list"):
        answer(Assignment.objects.select_related("item__trial", "expert").get(pk=pair.pk), experts[0])
    assert AuditEvent.objects.filter(action="scoring.item_superseded").count() == 2


def test_a_correction_that_reads_the_same_leaves_the_item_valid(scoring_trial, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, move=False, code="sm")
    services.build_items(trial=trial, by=investigator)
    report = Report.objects.filter(read__case=cases[0], read__arm="assisted").select_related("read__reader__user").get()
    reading_services.correct_report(read_id=report.read.pk, by=report.read.reader.user,
                                    findings="FINDINGS: " + report.findings, impression=report.impression + "  ",
                                    finding_flags={"pleural effusion": True}, reason="Flags only.")
    assert services.build_items(trial=trial, by=investigator).superseded == 0
    quality = [a for a in mine(experts[0], kind="quality")]
    answer_before(quality[0], experts[0])
    answer(quality[0], experts[0])


def test_opening_stamps_the_first_time_only(ready):
    trial, experts = ready
    first = mine(experts[0], kind="reference")[0]
    services.open_assignment(assignment=first, by=experts[0])
    stamp = Assignment.objects.get(pk=first.pk).opened_at
    services.open_assignment(assignment=Assignment.objects.select_related("item", "expert").get(pk=first.pk),
                             by=experts[0])
    assert Assignment.objects.get(pk=first.pk).opened_at == stamp
    with pytest.raises(services.NotAssigned):
        services.open_assignment(assignment=first, by=experts[1])
