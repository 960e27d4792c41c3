"""A prospective trial's life cycle and its screening log: statuses as data (trial.lifecycle), every arriving image
logged once with the rule or state that decided, and no PHI in the log."""
from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest
from django.test import TestCase

from core.errors import ServiceError, WrongStatus
from tests import dicom_corpus as corpus
from tests.live import arrive, image, open_trial
from tests.signing import proof
from trial import audit, lifecycle, randomization, screening, services
from trial.dicom import EligibilityRules
from trial.errors import CaseRejected, DuplicateImage, FileTooLarge, IllegalTransition, NotEnrolled
from trial.models import (
    Allocation,
    AuditEvent,
    Case,
    CaseIdentity,
    Deviation,
    Membership,
    Role,
    ScreeningEntry,
    SiteEnrolment,
    Status,
    Trial,
)


def _status_events(trial) -> list[dict]:
    return list(AuditEvent.objects.filter(trial=trial, action="trial.status_changed").order_by("id")
                .values_list("payload", flat=True))


def _prospective(investigator, code="live", **options) -> Trial:
    return services.create_trial(by=investigator, code=code, title="Live", mode="prospective", **options)


# ------------------------------------------------------------------------------------------------ the life cycle


def test_a_prospective_trial_screens_adults_frontal_chest_films_by_default(investigator):
    trial = _prospective(investigator)
    assert trial.mode == "prospective" and trial.is_prospective and trial.status == Status.SETUP
    assert EligibilityRules.from_dict(trial.eligibility) == EligibilityRules()
    # a reader study keeps its hand-picked set: no rules unless it asks
    assert services.create_trial(by=investigator, code="rs", title="Reader study").eligibility is None


def _opening_refused(trial, investigator, match: str) -> None:
    """The opening is refused and changes nothing: the trial stays in setup, nobody is randomized (the allocations
    made before the refusal roll back with it), nothing is audited and nothing is announced."""
    events, allocations = AuditEvent.objects.count(), Allocation.objects.count()
    with TestCase.captureOnCommitCallbacks() as announced, pytest.raises(IllegalTransition, match=match):
        services.transition_trial(trial=trial, by=investigator, to="open")
    trial.refresh_from_db()
    assert trial.status == Status.SETUP and _status_events(trial) == []
    assert Allocation.objects.count() == allocations and AuditEvent.objects.count() == events
    assert announced == []  # no trial_status_changed: nothing left the rolled-back transaction


def test_opening_needs_a_site_then_readers_in_both_arms_and_changes_nothing_until_then(investigator, make_user):
    trial = _prospective(investigator, block_multiples=[1], fixed_block_reason="a block of 2 fills both arms")
    _opening_refused(trial, investigator, "at least one site")
    site = services.add_site(trial=trial, by=investigator, code="site-a", name="A")
    # paired-parallel routes each arrival to a reader of each arm at once: a trial without readers cannot open
    _opening_refused(trial, investigator, "add its readers first")
    # one reader fills one arm only: every case would wait for ever in the other
    services.add_member(trial=trial, by=investigator, user=make_user("r0"), role=Role.READER, site=site)
    _opening_refused(trial, investigator, "readers randomized to each arm")
    services.add_member(trial=trial, by=investigator, user=make_user("r1"), role=Role.READER, site=site)
    assert not Allocation.objects.filter(trial=trial).exists()  # nobody is randomized during setup
    trial = services.transition_trial(trial=trial, by=investigator, to="open")
    assert Trial.objects.get(pk=trial.pk).status == Status.OPEN
    assert _status_events(trial) == [{"from": "setup", "to": "open"}]
    # the readers who joined during setup are randomized at the opening, within their site's stratum, from the
    # first position: the refused openings spent none
    allocations = Allocation.objects.filter(trial=trial, unit_type="reader")
    assert allocations.count() == 2 and set(allocations.values_list("stratum", flat=True)) == {"site-a"}
    assert sorted(allocations.values_list("position", flat=True)) == [0, 1]
    assert set(allocations.values_list("arm", flat=True)) == {"assisted", "standard"}


def test_a_paired_parallel_trial_whose_readers_fill_one_arm_does_not_open(investigator, make_user, monkeypatch):
    # blocks of 4: a seed whose first block puts the site's first two readers in the same arm
    scheme = randomization.Scheme(block_multiples=(2,))
    seed = next(seed for seed in (bytes([i]) * 32 for i in range(1, 256))
                if len({randomization.allocate(seed=seed, stratum="site-a", index=i, scheme=scheme).arm
                        for i in range(2)}) == 1)
    monkeypatch.setattr(randomization, "new_seed", lambda: seed)
    trial = _prospective(investigator, block_multiples=[2], fixed_block_reason="blocks of 4")
    assert services.scheme_for(trial) == scheme
    site = services.add_site(trial=trial, by=investigator, code="site-a", name="A")
    for i in range(2):
        services.add_member(trial=trial, by=investigator, user=make_user(f"r{i}"), role=Role.READER, site=site)
    _opening_refused(trial, investigator, "readers randomized to each arm")
    # a third reader joins: the block's next position is the other arm, and the trial opens (the refused opening
    # spent no position: the first two readers get the same arms as they would have then)
    services.add_member(trial=trial, by=investigator, user=make_user("r2"), role=Role.READER, site=site)
    assert services.transition_trial(trial=trial, by=investigator, to="open").status == Status.OPEN
    allocations = list(Allocation.objects.filter(trial=trial).order_by("position").values_list("arm", flat=True))
    assert allocations == [randomization.allocate(seed=seed, stratum="site-a", index=i, scheme=scheme).arm
                           for i in range(3)]
    assert set(allocations) == {"assisted", "standard"}


def test_a_case_randomized_prospective_trial_opens_without_readers(investigator):
    # cases are randomized, not readers: nothing to route at once, so no reader is needed to open
    trial = _prospective(investigator, design="case_randomized")
    services.add_site(trial=trial, by=investigator, code="site-a", name="A")
    assert services.transition_trial(trial=trial, by=investigator, to="open").status == Status.OPEN


def test_pausing_needs_a_reason_and_the_reason_is_kept_and_audited(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user)
    events = AuditEvent.objects.count()
    for blank in ("", "   \n "):
        with pytest.raises(ServiceError, match="Say why enrolment is paused") as refusal:
            services.transition_trial(trial=live.trial, by=investigator, to="paused", reason=blank)
        assert refusal.value.field == "reason"
    assert live.refresh().status == Status.OPEN and AuditEvent.objects.count() == events
    with pytest.raises(ServiceError, match="too long"):
        services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="x" * 301)
    assert live.refresh().status == Status.OPEN and AuditEvent.objects.count() == events

    services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="  PACS   migration ")
    trial = live.refresh()
    assert trial.status == Status.PAUSED and trial.pause_reason == "PACS migration"
    services.transition_trial(trial=trial, by=investigator, to="open")
    trial = live.refresh()
    assert trial.status == Status.OPEN and trial.pause_reason == ""  # the old reason does not linger
    services.transition_trial(trial=trial, by=investigator, to="closed")
    assert live.refresh().status == Status.CLOSED
    assert _status_events(trial) == [
        {"from": "setup", "to": "open"},
        {"from": "open", "to": "paused", "reason": "PACS migration"},
        {"from": "paused", "to": "open"},
        {"from": "open", "to": "closed"},
    ]
    assert AuditEvent.objects.filter(trial=trial, action="trial.status_changed", actor=investigator).count() == 4


def test_a_paused_trial_may_close_without_reopening(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user)
    services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Safety review")
    services.transition_trial(trial=live.trial, by=investigator, to="closed")
    trial = live.refresh()
    assert trial.status == Status.CLOSED and trial.pause_reason == ""


@pytest.mark.parametrize("path, illegal", [
    ((), "closed"),                              # setup → closed: never opened
    ((), "paused"),
    ((), "enrolling"),                           # a reader study's status
    (("open",), "enrolling"),
    (("open",), "reading"),
    (("open",), "scoring"),
    (("open",), "setup"),
    (("open",), "open"),
    (("open",), "locked"),                       # only a closed trial locks
    (("open", "closed"), "open"),                # closed stays closed
    (("open", "closed"), "paused"),
    (("open", "closed"), "unblinded"),
])
def test_illegal_moves_are_refused_and_nothing_changes(investigator, make_user, path, illegal):
    live = open_trial(investigator=investigator, make_user=make_user, open_=False)
    for step in path:
        services.transition_trial(trial=live.trial, by=investigator, to=step)
    before, events = live.refresh().status, AuditEvent.objects.count()
    with pytest.raises(IllegalTransition, match="cannot move to"):
        services.transition_trial(trial=live.trial, by=investigator, to=illegal, reason="because")
    trial = live.refresh()
    assert trial.status == before and trial.pause_reason == "" and AuditEvent.objects.count() == events


def test_a_closed_trial_locks_only_by_the_signed_act(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user)
    services.transition_trial(trial=live.trial, by=investigator, to="closed")
    with pytest.raises(IllegalTransition, match="electronically signed act"):
        services.transition_trial(trial=live.trial, by=investigator, to="locked")
    assert live.refresh().status == Status.CLOSED
    services.lock_trial(trial=live.trial, by=investigator, proof=proof(investigator))
    assert live.refresh().status == Status.LOCKED
    assert _status_events(live.trial)[-1] == {"from": "closed", "to": "locked"}


def test_an_open_trial_cannot_be_locked_even_by_the_signed_act(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user)
    events = AuditEvent.objects.count()
    with pytest.raises(IllegalTransition, match="cannot move to"):
        services.lock_trial(trial=live.trial, by=investigator, proof=proof(investigator))
    # the signature written before the refused move is rolled back with it
    assert live.refresh().status == Status.OPEN and AuditEvent.objects.count() == events


def test_a_reader_study_keeps_enrol_then_read_then_score(investigator, make_user):
    trial = services.create_trial(by=investigator, code="rs", title="Reader study", block_multiples=[1],
                                  fixed_block_reason="a block of 2 keeps the site in both arms")
    site = services.add_site(trial=trial, by=investigator, code="s1", name="S1")
    for i in range(2):
        services.add_member(trial=trial, by=investigator, user=make_user(f"rs{i}"), role=Role.READER, site=site)
    for prospective_only in ("open", "paused", "closed"):
        with pytest.raises(IllegalTransition, match="cannot move to"):
            services.transition_trial(trial=trial, by=investigator, to=prospective_only, reason="x")
    services.transition_trial(trial=trial, by=investigator, to="enrolling")
    with pytest.raises(IllegalTransition, match="cannot move to"):
        services.transition_trial(trial=trial, by=investigator, to="paused", reason="A pause")
    services.enrol_case(trial=trial, site=site, by=investigator, data=image(1))
    services.transition_trial(trial=trial, by=investigator, to="reading")
    services.transition_trial(trial=trial, by=investigator, to="scoring")
    assert [(e["from"], e["to"]) for e in _status_events(trial)] == [
        ("setup", "enrolling"), ("enrolling", "reading"), ("reading", "scoring")]


def test_a_crossover_trial_cannot_run_prospectively(investigator):
    events = AuditEvent.objects.count()
    with pytest.raises(ServiceError, match="runs as a reader study") as refusal:
        _prospective(investigator, design="crossover")
    assert refusal.value.field == "design"
    assert not Trial.objects.exists() and AuditEvent.objects.count() == events
    # the same design is fine as a reader study
    assert services.create_trial(by=investigator, code="xo", title="XO", design="crossover").mode == "reader_study"


def test_the_life_cycle_table_allows_work_by_status():
    # paused and closed enrol nothing, but reading, scoring and randomizing late joiners go on
    assert lifecycle.allows("open", lifecycle.ENROL) and not lifecycle.allows("paused", lifecycle.ENROL)
    assert not lifecycle.allows("closed", lifecycle.ENROL)
    for status in ("open", "paused", "closed"):
        assert lifecycle.allows(status, lifecycle.READ) and lifecycle.allows(status, lifecycle.RANDOMIZE)
    assert not lifecycle.allows("locked", lifecycle.READ) and not lifecycle.allows("setup", lifecycle.ENROL)
    assert lifecycle.next_statuses("prospective", "open") == ("paused", "closed")
    assert not lifecycle.can_move("reader_study", "setup", "open")


# ------------------------------------------------------------------------------------------------ screening


@pytest.fixture
def live(investigator, make_user):
    # settle 0: a lone lateral is judged alone at once (what these tests of the screening log look at); the study
    # window is tested in test_studies.py
    return open_trial(investigator=investigator, make_user=make_user, sites=("site-a", "site-b"),
                      readers_per_site=2, settle_seconds=0)


def _only_entry_since(before: int) -> ScreeningEntry:
    """Exactly one screening row was written for the arrival."""
    entries = list(ScreeningEntry.objects.filter(id__gt=before))
    assert len(entries) == 1, entries
    return entries[0]


def _last_id() -> int:
    return ScreeningEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _refused(live, site, data, *, code: str, error=NotEnrolled) -> ScreeningEntry:
    """Send an image that must not be enrolled: the refusal's class, its screening row (with `code`), and nothing
    else written (no case, no identity, the case counter unchanged)."""
    before, cases, counter = _last_id(), Case.objects.count(), live.refresh().case_counter
    with pytest.raises(error) as refusal:
        arrive(live.trial, site, data)
    entry = _only_entry_since(before)
    assert entry.outcome == "not_enrolled" and entry.code == code and entry.case is None
    assert entry.reason and entry.site_id == site.pk and entry.source == "dicom"
    assert len(refusal.value.message) > 10
    if error is NotEnrolled:
        assert refusal.value.code == code
    assert Case.objects.count() == cases and live.refresh().case_counter == counter
    assert AuditEvent.objects.filter(action="screening.not_enrolled", object_id=str(entry.pk),
                                     payload__code=code).exists()
    return entry


def test_an_eligible_arrival_is_enrolled_with_its_one_screening_row(live):
    before = _last_id()
    case = arrive(live.trial, live.sites[1], image(1), source="dicom")
    entry = _only_entry_since(before)
    assert (entry.outcome, entry.code, entry.case_id, entry.site_id, entry.source) == \
        ("enrolled", "", case.pk, live.sites[1].pk, "dicom")
    # from the hospital: no user enrolled it; its arrival time and place in the arrival order are kept
    assert case.enrolled_by is None and case.arrival_index == 1 and case.arrived_at == entry.received_at
    event = AuditEvent.objects.get(action="case.enrolled", object_id=str(case.pk))
    assert event.actor is None and event.payload["source"] == "dicom" and event.payload["screening"] == entry.pk


def test_an_investigators_upload_is_screened_the_same_way(live, investigator):
    case = services.enrol_case(trial=live.trial, site=live.sites[0], by=investigator, data=image(1))
    assert case.enrolled_by == investigator and case.screening.get().source == "upload"
    with pytest.raises(NotEnrolled) as refusal:
        services.enrol_case(trial=live.trial, site=live.sites[0], by=investigator, data=image(2, ViewPosition="LL"))
    assert refusal.value.code == "view_position"
    assert ScreeningEntry.objects.filter(source="upload").count() == 2


def test_a_paused_trial_logs_arrivals_as_not_enrolled_with_the_reason(live, investigator):
    services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Scanner recalibration")
    entry = _refused(live, live.sites[0], image(1), code="trial_paused")
    assert "Scanner recalibration" in entry.reason
    services.transition_trial(trial=live.trial, by=investigator, to="open")
    # the same image, sent again once the trial reopens, is enrolled (the refusal stored no fingerprint)
    assert arrive(live.trial, live.sites[0], image(1)).code == "C0001"


@pytest.mark.parametrize("state, code", [("paused", "site_paused"), ("closed", "site_closed")])
def test_a_stopped_site_logs_its_arrivals_while_the_others_enrol(live, investigator, state, code):
    with pytest.raises(ServiceError, match="Say why"):
        services.set_site_enrolment(site=live.sites[0], by=investigator, state=state)
    services.set_site_enrolment(site=live.sites[0], by=investigator, state=state, reason="Ethics amendment")
    event = AuditEvent.objects.filter(action="site.enrolment_changed").latest("id")
    assert event.actor == investigator and event.payload == {
        "site": "site-a", "from": "open", "to": state, "reason": "Ethics amendment"}
    entry = _refused(live, live.sites[0], image(1), code=code)
    assert "Ethics amendment" in entry.reason
    assert arrive(live.trial, live.sites[1], image(2)).site_id == live.sites[1].pk
    services.set_site_enrolment(site=live.sites[0], by=investigator, state="open")
    assert arrive(live.trial, live.sites[0], image(1)).site_id == live.sites[0].pk


def test_a_reached_target_refuses_further_arrivals_without_closing(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, target_cases=2)
    for seed in (1, 2):
        arrive(live.trial, live.sites[0], image(seed))
    entry = _refused(live, live.sites[0], image(3), code="target_reached")
    assert "2 cases" in entry.reason
    assert live.refresh().status == Status.OPEN  # close_at_target is off: the investigator decides


def test_close_at_target_closes_the_trial_on_the_last_case(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, target_cases=2, close_at_target=True)
    arrive(live.trial, live.sites[0], image(1))
    assert live.refresh().status == Status.OPEN
    arrive(live.trial, live.sites[0], image(2))
    assert live.refresh().status == Status.CLOSED
    # the platform closed it (no actor), audited with its reason
    event = AuditEvent.objects.filter(action="trial.status_changed").latest("id")
    assert event.actor is None and event.payload == {"from": "open", "to": "closed", "reason": "Target reached."}
    # a closed trial enrols nothing more: what still arrives is screened and logged as not enrolled
    entry = _refused(live, live.sites[0], image(3), code="trial_closed")
    assert entry.reason == screening.label("trial_closed")
    assert Case.objects.filter(trial=live.trial).count() == 2


def test_a_closed_trial_logs_its_arrivals_as_not_enrolled(live, investigator):
    arrive(live.trial, live.sites[0], image(1))
    services.transition_trial(trial=live.trial, by=investigator, to="closed")
    entry = _refused(live, live.sites[0], image(2), code="trial_closed")
    assert entry.reason == "The trial is closed to enrolment"
    # the trial's closure decides before the site's state, the duplicate check and the eligibility rules
    services.set_site_enrolment(site=live.sites[1], by=investigator, state="paused", reason="Staff shortage")
    _refused(live, live.sites[1], image(3), code="trial_closed")
    _refused(live, live.sites[0], image(1), code="trial_closed")                         # already enrolled
    _refused(live, live.sites[0], image(4, ViewPosition="LL"), code="trial_closed")      # ineligible
    # an unreadable file is still refused as such (the file is read before the trial's state is asked)
    _refused(live, live.sites[0], corpus.text_file(), code="dicom:not_dicom", error=CaseRejected)
    assert Counter(ScreeningEntry.objects.filter(trial=live.trial).values_list("code", flat=True)) == {
        "": 1, "trial_closed": 4, "dicom:not_dicom": 1}
    assert live.refresh().status == Status.CLOSED


def test_a_locked_trial_refuses_arrivals_and_logs_nothing(live, investigator):
    services.transition_trial(trial=live.trial, by=investigator, to="closed")
    services.lock_trial(trial=live.trial, by=investigator, proof=proof(investigator))
    events = AuditEvent.objects.count()
    with pytest.raises(WrongStatus, match="only while the trial is enrolling or open") as refusal:
        arrive(live.trial, live.sites[0], image(1))
    assert not isinstance(refusal.value, NotEnrolled)
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()
    assert AuditEvent.objects.count() == events


def test_close_at_target_closes_a_site_at_its_own_target(live, investigator):
    # close_at_target is a setting, not the design: it may change while the trial is open
    services.update_trial_settings(trial=live.trial, by=investigator, close_at_target=True)
    site_a, site_b = live.sites
    services.set_site_target(site=site_a, by=investigator, target_cases=1)
    assert AuditEvent.objects.filter(action="site.target_changed", payload__to=1).exists()
    arrive(live.trial, site_a, image(1))
    site_a.refresh_from_db()
    assert site_a.enrolment == SiteEnrolment.CLOSED and site_a.enrolment_reason == "Target reached."
    assert AuditEvent.objects.filter(action="site.enrolment_changed", actor=None, payload__to="closed").exists()
    _refused(live, site_a, image(2), code="site_closed")
    assert arrive(live.trial, site_b, image(3)).site_id == site_b.pk
    assert live.refresh().status == Status.OPEN


def test_a_site_target_without_close_at_target_refuses_but_leaves_the_site_open(live, investigator):
    services.set_site_target(site=live.sites[0], by=investigator, target_cases=1)
    arrive(live.trial, live.sites[0], image(1))
    entry = _refused(live, live.sites[0], image(2), code="target_reached")
    assert "site-a" in entry.reason
    live.sites[0].refresh_from_db()
    assert live.sites[0].enrolment == SiteEnrolment.OPEN


@pytest.mark.parametrize("rules, header, code", [
    ({"modalities": ["DX"]}, {}, "modality"),                                    # a CR where only DX is accepted
    ({}, {"ViewPosition": "LL"}, "view_position"),
    ({}, {"PatientAge": "012Y"}, "under_age"),
    ({}, {"PatientAge": None, "PatientBirthDate": None}, "age_unknown"),
    ({"max_age_years": 65}, {}, "over_age"),                                    # the corpus patient is 71
    ({}, {"BodyPartExamined": None}, "body_part"),         # (an abdomen is refused earlier, as dicom:not_chest)
])
def test_each_eligibility_rule_logs_its_own_code(investigator, make_user, rules, header, code):
    live = open_trial(investigator=investigator, make_user=make_user, settle_seconds=0,
                      eligibility={**EligibilityRules().to_dict(), **rules})
    entry = _refused(live, live.sites[0], image(1, **header), code=code)
    assert entry.reason.startswith(screening.label(code))
    assert screening.label(code) != code  # a sentence for the log and the flow


def test_age_unknown_is_accepted_where_the_rules_say_so(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user,
                      eligibility=EligibilityRules(accept_unknown_age=True).to_dict())
    assert arrive(live.trial, live.sites[0], image(1, PatientAge=None, PatientBirthDate=None))


def test_a_repeat_of_the_same_patient_is_excluded_and_no_patient_id_is_logged(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user,
                      eligibility=EligibilityRules(repeat_window_days=30).to_dict())
    site = live.sites[0]
    first = arrive(live.trial, site, image(1, StudyDate="20260301"))
    # another film of the same patient 10 days later: excluded as a repeat
    entry = _refused(live, site, image(2, StudyDate="20260311"), code="repeat")
    assert "10 days" in entry.reason
    # the same patient's ID typed differently is still the same patient
    _refused(live, site, image(3, StudyDate="20260305", PatientID=f" {corpus.PHI['patient_id'].lower()} "),
             code="repeat")
    # out of the window, and another patient within it, are enrolled
    assert arrive(live.trial, site, image(4, StudyDate="20260501"))
    assert arrive(live.trial, site, image(5, StudyDate="20260302", PatientID="MRN-OTHER-1"))

    identity = CaseIdentity.objects.get(case=first)
    assert identity.study_date == date(2026, 3, 1)
    assert len(identity.patient_key) == 64 and corpus.PHI["patient_id"] not in identity.patient_key
    # The screening log holds no PHI: no patient ID, no patient key, no study date, in any column or audit payload.
    field_names = {f.name for f in ScreeningEntry._meta.get_fields()}
    assert not field_names & {"patient_key", "patient_id", "study_date", "accession_number"}
    rows = list(ScreeningEntry.objects.values())
    assert len(rows) == 5
    stored = [str(value) for row in rows for value in row.values()]
    stored += [json.dumps(e.payload) for e in AuditEvent.objects.filter(action="screening.not_enrolled")]
    forbidden = [corpus.PHI["patient_id"], corpus.PHI["patient_id"].lower(), "MRN-OTHER-1", identity.patient_key,
                 corpus.PHI["patient_name"], "20260301", "2026-03-01", "20260311", "2026-03-11", "20260305"]
    assert [(value, text) for text in stored for value in forbidden if value in text] == []


@pytest.mark.parametrize("data, code, error", [
    (corpus.text_file, "dicom:not_dicom", CaseRejected),
    (corpus.no_pixel_data, "dicom:no_pixel_data", CaseRejected),
    (corpus.ct_modality, "dicom:wrong_modality", CaseRejected),
    (lambda: image(1, BodyPartExamined="ABDOMEN"), "dicom:not_chest", CaseRejected),
    (corpus.multi_frame, "dicom:multi_frame", CaseRejected),
])
def test_an_invalid_dicom_is_logged_with_its_refusal_code(live, data, code, error):
    _refused(live, live.sites[0], data(), code=code, error=error)


def test_a_file_over_the_size_limit_is_logged(live, settings):
    settings.CXR_MAX_DICOM_BYTES = 10_000
    _refused(live, live.sites[0], image(1), code="dicom:too_large", error=FileTooLarge)


def test_the_same_image_twice_is_logged_as_a_duplicate(live):
    arrive(live.trial, live.sites[0], image(1))
    entry = _refused(live, live.sites[0], image(1), code="duplicate", error=DuplicateImage)
    assert "already enrolled" in entry.reason
    # at another site of the same trial too: one image is one case
    _refused(live, live.sites[1], image(1), code="duplicate", error=DuplicateImage)


def test_a_resent_image_is_a_duplicate_even_under_a_repeat_rule(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user,
                      eligibility=EligibilityRules(repeat_window_days=30).to_dict())
    arrive(live.trial, live.sites[0], image(1))
    # a PACS that re-sends the same instance has not sent another study of the patient: the CONSORT flow must not
    # count it among the patients excluded as repeats
    entry = _refused(live, live.sites[0], image(1), code="duplicate", error=DuplicateImage)
    assert "already enrolled" in entry.reason
    # another image of the same patient within the window is still a repeat
    _refused(live, live.sites[0], image(2), code="repeat")
    assert not ScreeningEntry.objects.filter(code="repeat", reason__contains="already enrolled").exists()


def test_every_arrival_gets_exactly_one_row_and_the_counts_add_up(live, investigator, settings):
    site_a, site_b = live.sites
    arrivals = [
        (site_a, image(1), None),
        (site_b, image(2), None),
        (site_a, image(3, ViewPosition="LAT"), "view_position"),
        (site_a, image(4, PatientAge="009Y"), "under_age"),
        (site_b, corpus.text_file(), "dicom:not_dicom"),
        (site_a, image(1), "duplicate"),
        (site_b, image(5), None),
    ]
    for site, data, expected in arrivals:
        before = _last_id()
        try:
            arrive(live.trial, site, data)
        except (NotEnrolled, CaseRejected, DuplicateImage) as refusal:
            assert expected is not None, refusal.message
        entry = _only_entry_since(before)
        assert entry.code == (expected or "")
    services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Audit visit")
    with pytest.raises(NotEnrolled):
        arrive(live.trial, site_a, image(6))
    services.transition_trial(trial=live.trial, by=investigator, to="open")
    services.set_site_enrolment(site=site_b, by=investigator, state="paused", reason="Staff shortage")
    with pytest.raises(NotEnrolled):
        arrive(live.trial, site_b, image(7))

    screened = ScreeningEntry.objects.filter(trial=live.trial)
    not_enrolled = Counter(screened.filter(outcome="not_enrolled").values_list("code", flat=True))
    enrolled = screened.filter(outcome="enrolled").count()
    assert screened.count() == len(arrivals) + 2 == enrolled + sum(not_enrolled.values())
    assert enrolled == Case.objects.filter(trial=live.trial).count() == 3
    assert not_enrolled == {"view_position": 1, "under_age": 1, "dicom:not_dicom": 1, "duplicate": 1,
                            "trial_paused": 1, "site_paused": 1}
    # each case has its one row, and the per-site counts add up too
    assert all(case.screening.get().outcome == "enrolled" for case in Case.objects.filter(trial=live.trial))
    assert screened.filter(site=site_a).count() + screened.filter(site=site_b).count() == screened.count()


def test_a_trial_not_yet_open_refuses_arrivals_and_logs_nothing(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, open_=False)
    with pytest.raises(WrongStatus, match="only while the trial is enrolling or open") as refusal:
        arrive(live.trial, live.sites[0], image(1))
    assert not isinstance(refusal.value, NotEnrolled)
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()


def test_a_reader_study_screens_uploads_only_while_enrolling(investigator, make_user):
    trial = services.create_trial(by=investigator, code="rs", title="Reader study", block_multiples=[1],
                                  fixed_block_reason="a block of 2 keeps the site in both arms")
    site = services.add_site(trial=trial, by=investigator, code="s1", name="S1")
    for i in range(2):
        services.add_member(trial=trial, by=investigator, user=make_user(f"rs{i}"), role=Role.READER, site=site)
    with pytest.raises(WrongStatus, match="it is setup"):
        services.enrol_case(trial=trial, site=site, by=investigator, data=image(1))
    services.transition_trial(trial=trial, by=investigator, to="enrolling")
    services.enrol_case(trial=trial, site=site, by=investigator, data=image(1))
    assert ScreeningEntry.objects.get().outcome == "enrolled"
    for status in ("reading", "scoring"):
        services.transition_trial(trial=trial, by=investigator, to=status)
        with pytest.raises(WrongStatus, match=f"it is {status}") as refusal:
            services.enrol_case(trial=trial, site=site, by=investigator, data=image(2))
        assert not isinstance(refusal.value, NotEnrolled)
    assert ScreeningEntry.objects.count() == 1 and Case.objects.count() == 1


def test_a_site_of_another_trial_is_refused(live, investigator):
    other = _prospective(investigator, code="other")
    other_site = services.add_site(trial=other, by=investigator, code="x", name="X")
    with pytest.raises(ServiceError, match="another trial"):
        services.receive_image(trial=live.trial, site=other_site, data=image(1), source="dicom")
    assert not ScreeningEntry.objects.exists()


def test_a_case_randomized_trial_enrols_and_allocates_arrivals_from_the_hospital(investigator):
    trial = _prospective(investigator, design="case_randomized", block_multiples=[1],
                         fixed_block_reason="a block of 2 puts the first two cases in both arms")
    site = services.add_site(trial=trial, by=investigator, code="site-a", name="A")
    services.transition_trial(trial=trial, by=investigator, to="open")
    cases = [arrive(trial, site, image(seed)) for seed in (1, 2)]
    for position, case in enumerate(cases):
        allocation = Allocation.objects.get(case=case)
        # allocated by the platform: no user enrolled it, and none allocated it
        assert (allocation.stratum, allocation.position, allocation.unit_type) == ("site-a", position, "case")
        assert allocation.allocated_by is None and case.enrolled_by is None
        assert case.screening.get().outcome == "enrolled"
        event = AuditEvent.objects.get(action="allocation.made", object_id=str(allocation.pk))
        assert event.actor is None and event.payload["unit"] == case.code
    assert {a.arm for a in Allocation.objects.filter(trial=trial)} == {"assisted", "standard"}  # a block of 2
    # an investigator's upload records who allocated it
    upload = services.enrol_case(trial=trial, site=site, by=investigator, data=image(3))
    assert Allocation.objects.get(case=upload).allocated_by == investigator


def test_a_fault_while_storing_is_not_reported_as_a_duplicate(live, monkeypatch):
    from django.db import IntegrityError

    def fault(**kwargs):
        raise IntegrityError("some other constraint")

    monkeypatch.setattr(services, "_close_at_target", fault)
    with pytest.raises(IntegrityError, match="some other constraint"):
        arrive(live.trial, live.sites[0], image(1))
    # nothing is stored, and the image is not logged as "already enrolled"
    assert not Case.objects.exists() and not ScreeningEntry.objects.filter(code="duplicate").exists()
    assert live.refresh().case_counter == 0
    monkeypatch.undo()
    assert arrive(live.trial, live.sites[0], image(1)).code == "C0001"


def test_the_same_image_enrolled_meanwhile_is_a_duplicate(live, monkeypatch):
    # a concurrent arrival of the same image enrols it after this one's duplicate check: the unique constraint
    # decides, and the refusal is logged as a duplicate
    original = services.dicom.arrival_from_header
    raced = []

    def arrival_from_header(ds, **kwargs):
        if not raced:  # once: the concurrent arrival's own call passes straight through
            raced.append(None)
            raced[0] = services.receive_image(trial=live.trial, site=live.sites[1], data=image(1), source="dicom")
        return original(ds, **kwargs)

    monkeypatch.setattr(services.dicom, "arrival_from_header", arrival_from_header)
    with pytest.raises(DuplicateImage, match="already enrolled"):
        arrive(live.trial, live.sites[0], image(1))
    [case] = raced
    assert list(Case.objects.values_list("pk", flat=True)) == [case.pk] and live.refresh().case_counter == 1
    # one row for each arrival: the concurrent one enrolled, this one a duplicate
    assert list(ScreeningEntry.objects.order_by("id").values_list("outcome", "code", "site__code", "case")) == [
        ("enrolled", "", "site-b", case.pk), ("not_enrolled", "duplicate", "site-a", None)]


# ------------------------------------------------------------------------------------------------ deviations


def test_an_investigator_reports_a_deviation_of_kind_other(live, investigator):
    case = arrive(live.trial, live.sites[0], image(1))
    with pytest.raises(ServiceError, match="Say what happened"):
        services.report_deviation(trial=live.trial, by=investigator, description="   ")
    assert not Deviation.objects.exists()
    deviation = services.report_deviation(trial=live.trial, by=investigator, case=case,
                                          description="Film read on a non-diagnostic monitor", reason="Outage")
    assert (deviation.kind, deviation.intercurrent, deviation.recorded_by, deviation.case) == \
        ("other", False, investigator, case)
    assert AuditEvent.objects.filter(action="deviation.recorded", object_id=str(deviation.pk),
                                     payload__kind="other").exists()


def test_withdrawing_a_case_is_an_intercurrent_event(live, investigator):
    case = arrive(live.trial, live.sites[0], image(1))
    with pytest.raises(ServiceError, match="Say why"):
        services.withdraw_case(case=case, by=investigator, reason="")
    services.withdraw_case(case=case, by=investigator, reason="Consent withdrawn")
    case.refresh_from_db()
    assert case.withdrawn_at is not None and case.withdrawal_reason == "Consent withdrawn"
    deviation = Deviation.objects.get(kind="case_withdrawn")
    assert deviation.intercurrent and deviation.case == case
    assert AuditEvent.objects.filter(action="case.withdrawn", object_id=str(case.pk)).exists()


def test_the_audit_chain_holds_after_a_live_day(live, investigator):
    arrive(live.trial, live.sites[0], image(1))
    with pytest.raises(NotEnrolled):
        arrive(live.trial, live.sites[0], image(2, ViewPosition="LL"))
    services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Night")
    member = Membership.objects.filter(trial=live.trial, role=Role.READER).first()
    services.set_on_duty(membership=member, by=investigator, on_duty=False)
    assert audit.verify().intact


def test_a_reader_withdrawn_during_setup_is_not_randomized_at_the_opening(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, readers_per_site=3, open_=False)
    gone = Membership.objects.get(trial=live.trial, user=live.readers[0])
    services.withdraw_reader(membership=gone, by=investigator, reason="Declined to take part")
    services.transition_trial(trial=live.trial, by=investigator, to="open")
    # the opening checked for readers not withdrawn; the randomization must look at the same readers, or the two who
    # stay may both land in one arm of their site's block and leave the other arm empty
    assert not Allocation.objects.filter(membership=gone).exists()
    assert Allocation.objects.filter(trial=live.trial, unit_type="reader").count() == 2
    stayed = Allocation.objects.filter(trial=live.trial, unit_type="reader").order_by("position")
    assert [a.membership.user for a in stayed] == live.readers[1:]
    assert [a.position for a in stayed] == [0, 1] and {a.arm for a in stayed} == {"assisted", "standard"}


def test_a_trial_left_with_one_reader_after_a_withdrawal_in_setup_does_not_open(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, readers_per_site=2, open_=False)
    services.withdraw_reader(membership=live.member(live.readers[0]), by=investigator, reason="Declined")
    # one reader not withdrawn passes the readers check, but fills one arm only
    _opening_refused(live.trial, investigator, "readers randomized to each arm")
