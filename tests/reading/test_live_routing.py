"""A prospective trial's reading: each arriving case routed at once to an on-duty reader of each arm at its site,
waiting when nobody is on duty, ties broken by the concealed sequence; withdrawn readers' open reads re-routed and
withdrawn cases' open reads closed, with their text kept; the draft rule; deviations seen at submit; nobody reads
outside their own worklist."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from ai.models import DraftStatus, ModelVersion, TrialModel
from core import clock
from core.errors import Conflict, ServiceError, WrongStatus
from reading import routing, selectors, services
from reading.models import Read, ReadEvent, ReadStatus, Report, ReportDraft
from tests.live import arrive, committed, image, open_trial
from tests.reading.conftest import make_draft
from trial import randomization
from trial import services as trial_services
from trial.access import access_for
from trial.models import Allocation, AuditEvent, Deviation, Membership, Role

ASSISTED, STANDARD = "assisted", "standard"


def _worklist(user, trial):
    return selectors.worklist(access=access_for(user=user, code=trial.code)).rows


CLOSED = (ReadStatus.REROUTED, ReadStatus.CASE_WITHDRAWN)  # closed before their reader submitted them


def _live_reads(case) -> list[Read]:
    return list(Read.objects.filter(case=case).exclude(status__in=CLOSED).select_related("reader"))


def _open_load(trial, arm) -> Counter:
    return Counter(Read.objects.filter(trial=trial, arm=arm, status__in=("assigned", "in_progress"))
                   .values_list("reader__pseudonym", flat=True))


def _submit(read, user, **kw):
    return services.submit_report(read_id=read.pk, by=user, findings=kw.get("findings", "Clear lungs."),
                                  impression=kw.get("impression", "No acute abnormality."), finding_flags={},
                                  tab_id="t1")


def _attach_model(live, investigator) -> ModelVersion:
    """The trial's model, attached after the arrivals (as tests/reading/conftest does) so that no model runs here;
    drafts are then written directly with the status a test needs."""
    model = ModelVersion.objects.create(name=f"m-{live.trial.code}", backend="http", url="http://127.0.0.1:9/v1")
    TrialModel.objects.create(trial=live.trial, model_version=model, assigned_by=investigator)
    return model


def _on_duty(member: Membership, by, on_duty: bool) -> Membership:
    with committed():  # a reader coming on duty announces readers_changed on commit: routing follows
        return trial_services.set_on_duty(membership=member, by=by, on_duty=on_duty)


def _withdraw(member: Membership, by, reason="Left the hospital") -> Membership:
    with committed():
        return trial_services.withdraw_reader(membership=member, by=by, reason=reason)


def _withdraw_case(case, by, reason="Consent withdrawn"):
    with committed():  # withdraw_case announces case_withdrawn on commit: reading closes the case's open reads
        return trial_services.withdraw_case(case=case, by=by, reason=reason)


@pytest.fixture
def build(investigator, make_user):
    def build(**kwargs):
        return open_trial(investigator=investigator, make_user=make_user, **kwargs)

    return build


# ------------------------------------------------------------------------------------------------ at arrival


def test_a_case_goes_at_once_to_one_reader_of_each_arm_at_its_site(build):
    live = build(sites=("site-a", "site-b"), readers_per_site=2)
    site_a, site_b = live.sites
    case = arrive(live.trial, site_b, image(1))
    reads = _live_reads(case)
    assert sorted(r.arm for r in reads) == [ASSISTED, STANDARD]
    for read in reads:
        member = Membership.objects.select_related("allocation").get(pk=read.reader_id)
        assert member.site_id == site_b.pk and member.allocation.arm == read.arm
        assert read.order_key == case.arrival_index == 1  # a live worklist is in arrival order
    # routed by the platform, one audited assignment per arm
    events = AuditEvent.objects.filter(action="read.assigned", payload__case=case.code)
    assert events.count() == 2 and {e.actor_id for e in events} == {None}
    # the readers of the other site receive nothing
    for member in Membership.objects.filter(trial=live.trial, role=Role.READER, site=site_a):
        assert _worklist(member.user, live.trial) == []


def test_a_reader_off_duty_receives_nothing(build):
    live = build(readers_per_site=4)
    site = live.sites[0]
    off, on = live.readers_of(site=site, arm=ASSISTED)
    _on_duty(off, by=off.user, on_duty=False)  # a reader marks themselves off duty
    assert AuditEvent.objects.filter(action="reader.off_duty", object_id=str(off.pk), actor=off.user).exists()
    cases = [arrive(live.trial, site, image(seed)) for seed in range(1, 5)]
    assert _worklist(off.user, live.trial) == []
    assert [r.case_code for r in _worklist(on.user, live.trial)] == [c.code for c in cases]
    # the standard arm, everyone on duty, shares the cases evenly
    assert sorted(_open_load(live.trial, STANDARD).values()) == [2, 2]


def test_a_case_waits_for_an_arm_with_nobody_on_duty_and_goes_to_the_reader_who_comes_on_duty(build, investigator):
    live = build(readers_per_site=2)
    site = live.sites[0]
    [assisted] = live.readers_of(site=site, arm=ASSISTED)
    [standard] = live.readers_of(site=site, arm=STANDARD)
    _on_duty(standard, by=investigator, on_duty=False)  # an investigator may do it from the site's roster
    first, second = arrive(live.trial, site, image(1)), arrive(live.trial, site, image(2))
    for case in (first, second):
        # the assisted read is not held back by the arm that waits
        assert [(r.arm, r.reader_id) for r in _live_reads(case)] == [(ASSISTED, assisted.pk)]
    assert services.route_trial(trial=live.trial) == 0  # routing again finds nobody: idempotent, nothing made
    assert Read.objects.filter(trial=live.trial).count() == 2

    _on_duty(standard, by=standard.user, on_duty=True)
    assert [(r.case_code, r.available) for r in _worklist(standard.user, live.trial)] == [
        (first.code, True), (second.code, True)]  # in arrival order
    assert {r.reader_id for r in Read.objects.filter(trial=live.trial, arm=STANDARD)} == {standard.pk}
    assert AuditEvent.objects.filter(action="reader.on_duty", object_id=str(standard.pk)).exists()
    # coming on duty twice changes nothing
    events = AuditEvent.objects.count()
    _on_duty(standard, by=standard.user, on_duty=True)
    assert AuditEvent.objects.count() == events and Read.objects.filter(trial=live.trial).count() == 4


def test_only_the_reader_or_an_investigator_changes_duty(build, make_user):
    live = build(readers_per_site=2)
    member, other = (live.member(u) for u in live.readers)
    with pytest.raises(PermissionDenied):
        trial_services.set_on_duty(membership=member, by=other.user, on_duty=False)
    member.refresh_from_db()
    assert member.on_duty


def test_with_nobody_on_duty_a_case_waits_in_both_arms(build):
    live = build(readers_per_site=2)
    members = [live.member(u) for u in live.readers]
    for member in members:
        _on_duty(member, by=member.user, on_duty=False)
    case = arrive(live.trial, live.sites[0], image(1))
    assert _live_reads(case) == []
    _on_duty(members[0], by=members[0].user, on_duty=True)
    assert [r.reader_id for r in _live_reads(case)] == [members[0].pk]


def _assignments(live, cases) -> list[tuple[str, str, str]]:
    return sorted((r.case.code, r.arm, r.reader.pseudonym)
                  for r in Read.objects.filter(case__in=cases).select_related("case", "reader"))


def test_ties_are_broken_by_the_concealed_sequence_reproducibly_and_load_stays_balanced(build, monkeypatch):
    def run(code: str, seed: bytes):
        monkeypatch.setattr(randomization, "new_seed", lambda: seed)
        live = build(code=code, readers_per_site=6)  # three readers in each arm
        arms = {arm: live.readers_of(site=live.sites[0], arm=arm) for arm in (ASSISTED, STANDARD)}
        assert [len(members) for members in arms.values()] == [3, 3]
        cases = []
        for i in range(9):
            cases.append(arrive(live.trial, live.sites[0], image(100 + i)))
            # nobody submits here: at every arrival, each arm's readers hold within one read of each other
            load = Counter(Read.objects.filter(trial=live.trial).values_list("reader_id", flat=True))
            for members in arms.values():
                held = [load[m.pk] for m in members]
                assert max(held) - min(held) <= 1, held
        return _assignments(live, cases)

    first = run("tie-1", b"\x01" * 32)
    again = run("tie-2", b"\x01" * 32)
    other = run("tie-3", b"\x02" * 32)
    assert first == again            # the same seed and arrival order give the same readers
    assert first != other            # and the seed, not the reader's id, decides the ties
    # after nine cases with three readers in each arm, each reader holds three
    assert Counter(p for _, _, p in first) == Counter({p: 3 for p in {p for _, _, p in first}})


def test_the_reader_with_fewest_open_reads_gets_the_next_case(build):
    live = build(readers_per_site=4)
    site = live.sites[0]
    busy_free = live.readers_of(site=site, arm=STANDARD)
    for seed in range(1, 5):
        arrive(live.trial, site, image(seed))
    assert sorted(_open_load(live.trial, STANDARD).values()) == [2, 2]
    finisher = busy_free[0]
    for read in Read.objects.filter(reader=finisher):
        services.record_event(read_id=read.pk, by=finisher.user, kind="opened", tab_id="t1")
        _submit(read, finisher.user)
    # submitted reads no longer count: the next two cases go to the reader with none open
    later = [arrive(live.trial, site, image(seed)) for seed in (5, 6)]
    for case in later:
        assert Read.objects.get(case=case, arm=STANDARD).reader_id == finisher.pk


def test_a_case_randomized_case_goes_to_one_on_duty_reader_of_its_site_in_its_arm(investigator, make_user):
    # readers are not randomized here (cases are): any reader of the site on duty reads in the case's arm
    live = open_trial(investigator=investigator, make_user=make_user, code="cr", design="case_randomized",
                      sites=("site-a", "site-b"), readers_per_site=2)
    site_a, site_b = live.sites
    off = live.member(live.readers[0])
    _on_duty(off, by=off.user, on_duty=False)
    # from the PACS (allocated by the platform) and an investigator's upload alike
    cases = [arrive(live.trial, site_a, image(seed)) for seed in (1, 2)] + [_upload(live, investigator, site_a, 3)]
    for case in cases:
        [read] = Read.objects.filter(case=case)
        assert read.arm == Allocation.objects.get(case=case).arm
        assert read.reader_id == live.member(live.readers[1]).pk  # the only site-a reader on duty
    assert [Allocation.objects.get(case=case).allocated_by for case in cases] == [None, None, investigator]
    assert not Read.objects.filter(reader__site=site_b).exists()


def _upload(live, investigator, site, seed):
    """An investigator's upload, with what its commit sets off."""
    with committed():
        return trial_services.enrol_case(trial=live.trial, site=site, by=investigator, data=image(seed))


def test_routing_rule_is_pure_and_reproducible():
    seed = b"\x07" * 32
    tied = [routing.Candidate(7, 1), routing.Candidate(3, 1), routing.Candidate(5, 2)]
    picks = [routing.choose(tied, rule="fewest_open", seed=seed, arrival_index=i, arm=ASSISTED) for i in range(60)]
    assert set(picks) == {3, 7}  # only the least loaded, and both of them over many arrivals
    assert picks == [routing.choose(list(reversed(tied)), rule="fewest_open", seed=seed, arrival_index=i,
                                    arm=ASSISTED) for i in range(60)]  # the order candidates come in does not matter
    assert routing.choose([routing.Candidate(9, 0), routing.Candidate(1, 4)], rule="fewest_open", seed=seed,
                          arrival_index=0, arm=STANDARD) == 9
    assert routing.choose([], rule="fewest_open", seed=seed, arrival_index=0, arm=STANDARD) is None
    with pytest.raises(ValueError, match="Unknown routing rule"):
        routing.choose(tied, rule="round_robin", seed=seed, arrival_index=0, arm=ASSISTED)


def test_a_reader_who_joins_an_open_trial_is_randomized_at_once_and_receives_waiting_cases(build, investigator,
                                                                                          make_user):
    live = build(readers_per_site=2)
    site = live.sites[0]
    for member in (live.member(u) for u in live.readers):
        _on_duty(member, by=member.user, on_duty=False)
    waiting = [arrive(live.trial, site, image(seed)) for seed in (1, 2)]
    newcomer = make_user("newcomer")
    with committed():
        member = trial_services.add_member(trial=live.trial, by=investigator, user=newcomer, role=Role.READER,
                                           site=site)
    allocation = Allocation.objects.get(membership=member)
    assert allocation.stratum == site.code and allocation.position == 2  # the site's third reader
    assert AuditEvent.objects.filter(action="allocation.made", payload__unit=member.pseudonym).exists()
    # the waiting cases go to the newcomer in their arm; the other arm still waits
    rows = _worklist(newcomer, live.trial)
    assert [r.case_code for r in rows] == [c.code for c in waiting]
    assert {r.arm for r in Read.objects.filter(trial=live.trial)} == {allocation.arm}


def test_a_withdrawn_case_is_not_routed_when_a_reader_comes_on_duty(build, investigator):
    live = build(readers_per_site=2)
    members = [live.member(u) for u in live.readers]
    for member in members:
        _on_duty(member, by=member.user, on_duty=False)
    case = arrive(live.trial, live.sites[0], image(1))
    trial_services.withdraw_case(case=case, by=investigator, reason="Wrong patient")
    _on_duty(members[0], by=members[0].user, on_duty=True)
    assert not Read.objects.filter(case=case).exists()


def test_a_withdrawn_case_is_read_no_further(build, investigator):
    live = build(readers_per_site=2)
    site = live.sites[0]
    case, other = arrive(live.trial, site, image(1)), arrive(live.trial, site, image(2))
    [standard] = live.readers_of(site=site, arm=STANDARD)
    read = Read.objects.get(case=case, arm=STANDARD)
    _withdraw_case(case, by=investigator)
    # withdraw_case: "it is read and scored no further": both its reads are closed and leave the worklists
    assert {r.arm: r.status for r in Read.objects.filter(case=case)} == {ASSISTED: "withdrawn", STANDARD: "withdrawn"}
    assert [r.case_code for r in _worklist(standard.user, live.trial)] == [other.code]
    counts = (ReadEvent.objects.count(), ReportDraft.objects.count(), AuditEvent.objects.count())
    for attempt in (
        lambda: selectors.own_read(read_id=read.pk, user=standard.user),  # opening the reading page
        lambda: services.record_event(read_id=read.pk, by=standard.user, kind="opened", tab_id="t1"),
        lambda: services.autosave(read_id=read.pk, by=standard.user, findings="x", impression="y",
                                  finding_flags={}, base_version=None, tab_id="t1"),
        lambda: _submit(read, standard.user),
    ):
        with pytest.raises(Conflict, match="withdrawn from the trial") as refusal:
            attempt()
        assert refusal.value.code == "case_withdrawn"
    assert not Report.objects.filter(read=read).exists()
    assert counts == (ReadEvent.objects.count(), ReportDraft.objects.count(), AuditEvent.objects.count())
    # the closing is audited by the platform, and routing does not give the case to anyone again
    closed = AuditEvent.objects.filter(action="read.closed_case_withdrawn", payload__case=case.code)
    assert closed.count() == 2 and {e.actor_id for e in closed} == {None}
    assert services.route_trial(trial=live.trial) == 0 and Read.objects.filter(case=case).count() == 2
    # the other case is untouched
    assert {r.status for r in Read.objects.filter(case=other)} == {ReadStatus.ASSIGNED}


@pytest.mark.parametrize("status", ["open", "paused", "closed"])
def test_a_withdrawn_cases_open_read_is_closed_with_its_text_kept(build, investigator, status):
    live = build(readers_per_site=2)
    site = live.sites[0]
    case = arrive(live.trial, site, image(1))
    standard = Read.objects.get(case=case, arm=STANDARD)
    reader = standard.reader.user
    services.record_event(read_id=standard.pk, by=reader, kind="opened", tab_id="t1")
    services.autosave(read_id=standard.pk, by=reader, findings="Hazy right base.", impression="Possible consolidation",
                      finding_flags={}, base_version=None, tab_id="t1")
    if status == "paused":
        trial_services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Audit visit")
    elif status == "closed":
        trial_services.transition_trial(trial=live.trial, by=investigator, to="closed")
    _withdraw_case(case, by=investigator, reason="Image of another patient")

    standard.refresh_from_db()
    assert standard.status == ReadStatus.CASE_WITHDRAWN == "withdrawn" and standard.submitted_at is None
    assert standard.opened_at is not None  # what happened before stays
    saved = ReportDraft.objects.get(read=standard)  # the text typed so far is kept with the read
    assert (saved.findings, saved.impression) == ("Hazy right base.", "Possible consolidation")
    event = AuditEvent.objects.get(action="read.closed_case_withdrawn", object_id=str(standard.pk))
    assert event.actor is None and event.payload["had_text"] is True
    assert AuditEvent.objects.get(action="read.closed_case_withdrawn", payload__case=case.code,
                                  payload__had_text=False).object_id != str(standard.pk)  # the assisted read
    assert _worklist(reader, live.trial) == []

    events, audit_events = ReadEvent.objects.count(), AuditEvent.objects.count()
    with pytest.raises(Conflict) as refusal:
        _submit(standard, reader, impression="Right lower lobe pneumonia.")
    assert refusal.value.code == "case_withdrawn" and "read no further" in refusal.value.message
    standard.refresh_from_db()
    assert standard.status == ReadStatus.CASE_WITHDRAWN and not Report.objects.filter(read=standard).exists()
    assert ReportDraft.objects.get(read=standard).findings == "Hazy right base."  # not overwritten by the submit
    assert ReadEvent.objects.count() == events and AuditEvent.objects.count() == audit_events
    # the case is not routed again, to this reader or another
    assert not Read.objects.filter(case=case).exclude(status=ReadStatus.CASE_WITHDRAWN).exists()


def test_a_withdrawn_case_keeps_its_submitted_read(build, investigator):
    live = build(readers_per_site=2)
    case = arrive(live.trial, live.sites[0], image(1))
    done = Read.objects.get(case=case, arm=STANDARD)
    report = _submit(done, done.reader.user)
    _withdraw_case(case, by=investigator)
    done.refresh_from_db()
    assert done.status == ReadStatus.SUBMITTED and Report.objects.get(read=done) == report
    assert Read.objects.get(case=case, arm=ASSISTED).status == ReadStatus.CASE_WITHDRAWN
    # the submitted read stays on its reader's worklist, read
    assert [(r.case_code, r.status) for r in _worklist(done.reader.user, live.trial)] == [(case.code, "submitted")]


def test_urgent_cases_come_first_where_the_trial_flags_urgency(build):
    live = build(readers_per_site=2, flag_urgency=True)
    site = live.sites[0]
    routine = arrive(live.trial, site, image(1))
    urgent = arrive(live.trial, site, image(2), urgent=True)
    [standard] = live.readers_of(site=site, arm=STANDARD)
    rows = _worklist(standard.user, live.trial)
    assert [(r.case_code, r.urgent) for r in rows] == [(urgent.code, True), (routine.code, False)]


def test_urgency_is_ignored_where_the_trial_does_not_flag_it(build):
    live = build(readers_per_site=2)
    case = arrive(live.trial, live.sites[0], image(1), urgent=True)
    assert not case.urgent


# ------------------------------------------------------------------------------------------------ withdrawal


def test_a_withdrawn_readers_open_read_goes_to_another_reader_with_its_text_kept(build, investigator):
    live = build(readers_per_site=4)
    site = live.sites[0]
    leaving, staying = live.readers_of(site=site, arm=STANDARD)
    _on_duty(staying, by=staying.user, on_duty=False)  # so that both cases go to the reader who will leave
    done_case, open_case = arrive(live.trial, site, image(1)), arrive(live.trial, site, image(2))
    done = Read.objects.get(case=done_case, arm=STANDARD, reader=leaving)
    services.record_event(read_id=done.pk, by=leaving.user, kind="opened", tab_id="t1")
    done_report = _submit(done, leaving.user, impression="Right lower lobe pneumonia.")
    unfinished = Read.objects.get(case=open_case, arm=STANDARD, reader=leaving)
    services.record_event(read_id=unfinished.pk, by=leaving.user, kind="opened", tab_id="t1")
    services.autosave(read_id=unfinished.pk, by=leaving.user, findings="Hazy left base.", impression="Possible",
                      finding_flags={}, base_version=None, tab_id="t1")
    _on_duty(staying, by=staying.user, on_duty=True)
    assert Read.objects.filter(reader=staying).count() == 0  # nothing was waiting for the standard arm

    _withdraw(leaving, by=investigator, reason="Moved to another hospital")

    leaving.refresh_from_db()
    assert leaving.withdrawn_at is not None and not leaving.on_duty
    unfinished.refresh_from_db()
    assert unfinished.status == ReadStatus.REROUTED
    saved = ReportDraft.objects.get(read=unfinished)  # what was typed stays with the old read
    assert (saved.findings, saved.impression) == ("Hazy left base.", "Possible")
    # the case went to the other reader of the same arm and site, once
    [new] = Read.objects.filter(case=open_case, arm=STANDARD).exclude(pk=unfinished.pk)
    assert (new.reader_id, new.status) == (staying.pk, ReadStatus.ASSIGNED)
    assert new.reader.site_id == site.pk and not ReportDraft.objects.filter(read=new).exists()
    assert [r.case_code for r in _worklist(staying.user, live.trial)] == [open_case.code]
    # the finished read stays finished and is not routed again
    done.refresh_from_db()
    assert done.status == ReadStatus.SUBMITTED and Report.objects.get(read=done) == done_report
    assert Read.objects.filter(case=done_case, arm=STANDARD).count() == 1
    # the withdrawal is an intercurrent event, and each step is audited
    deviation = Deviation.objects.get(kind="reader_withdrawn")
    assert (deviation.intercurrent, deviation.reader_id, deviation.recorded_by, deviation.reason) == \
        (True, leaving.pk, investigator, "Moved to another hospital")
    assert AuditEvent.objects.filter(action="reader.withdrawn", object_id=str(leaving.pk)).exists()
    rerouted = AuditEvent.objects.get(action="read.rerouted", object_id=str(unfinished.pk))
    assert rerouted.payload["had_text"] is True
    # the withdrawn reader's worklist no longer shows the re-routed read
    assert [r.case_code for r in _worklist(leaving.user, live.trial)] == [done_case.code]


def test_a_withdrawn_reader_cannot_write_to_a_rerouted_read(build, investigator):
    live = build(readers_per_site=4)
    site = live.sites[0]
    case = arrive(live.trial, site, image(1))
    read = Read.objects.get(case=case, arm=STANDARD)
    leaving = Membership.objects.select_related("user").get(pk=read.reader_id)
    services.autosave(read_id=read.pk, by=leaving.user, findings="Typed.", impression="So far", finding_flags={},
                      base_version=None, tab_id="t1")
    _withdraw(leaving, by=investigator)
    events, audit_events = ReadEvent.objects.count(), AuditEvent.objects.count()
    for attempt in (
        lambda: _submit(read, leaving.user, impression="Late"),
        lambda: services.autosave(read_id=read.pk, by=leaving.user, findings="More.", impression="Later",
                                  finding_flags={}, base_version=None, tab_id="t1"),
        lambda: services.record_event(read_id=read.pk, by=leaving.user, kind="heartbeat", tab_id="t1"),
    ):
        with pytest.raises(Conflict) as refusal:
            attempt()
        assert refusal.value.code == "rerouted"
    read.refresh_from_db()
    assert read.status == ReadStatus.REROUTED and read.submitted_at is None
    assert not Report.objects.filter(read=read).exists()
    assert ReportDraft.objects.get(read=read).findings == "Typed."
    assert ReadEvent.objects.count() == events and AuditEvent.objects.count() == audit_events


def test_a_withdrawn_reader_is_told_why_the_read_is_closed(build, investigator):
    live = build(readers_per_site=4)
    case = arrive(live.trial, live.sites[0], image(1))
    read = Read.objects.get(case=case, arm=STANDARD)
    leaving = Membership.objects.get(pk=read.reader_id)
    _withdraw(leaving, by=investigator)
    # the read waits for nothing here (a standard read): the refusal says why it is closed, not "not available yet"
    for attempt in (
        lambda: selectors.own_read(read_id=read.pk, user=leaving.user),
        lambda: services.record_event(read_id=read.pk, by=leaving.user, kind="opened", tab_id="t1"),
        lambda: _submit(read, leaving.user),
    ):
        with pytest.raises(Conflict, match="withdrawn from this trial") as refusal:
            attempt()
        assert refusal.value.code == "rerouted"


def test_a_rerouted_case_waits_when_nobody_else_is_on_duty(build, investigator):
    live = build(readers_per_site=4)
    site = live.sites[0]
    leaving, other = live.readers_of(site=site, arm=STANDARD)
    _on_duty(other, by=other.user, on_duty=False)
    case = arrive(live.trial, site, image(1))
    _withdraw(leaving, by=investigator)
    assert [r.arm for r in _live_reads(case)] == [ASSISTED]
    _on_duty(other, by=other.user, on_duty=True)
    assert Read.objects.get(case=case, arm=STANDARD, status=ReadStatus.ASSIGNED).reader_id == other.pk


def test_withdrawal_refusals_change_nothing(build, investigator):
    live = build(readers_per_site=2)
    member = live.member(live.readers[0])
    events = AuditEvent.objects.count()
    with pytest.raises(ServiceError, match="Say why the reader is withdrawn"):
        trial_services.withdraw_reader(membership=member, by=investigator, reason="  ")
    with pytest.raises(PermissionDenied):
        trial_services.withdraw_reader(membership=member, by=live.readers[1], reason="I say so")
    member.refresh_from_db()
    assert member.withdrawn_at is None and AuditEvent.objects.count() == events
    assert not Deviation.objects.exists()
    _withdraw(member, by=investigator)
    with pytest.raises(Conflict, match="already withdrawn"):
        trial_services.withdraw_reader(membership=member, by=investigator, reason="Again")
    with pytest.raises(WrongStatus, match="does not go on duty again"):
        trial_services.set_on_duty(membership=member, by=member.user, on_duty=True)
    assert Deviation.objects.count() == 1


# ------------------------------------------------------------------------------------------------ the draft rule


def _assisted_read(live, case) -> tuple[Read, Membership]:
    read = Read.objects.get(case=case, arm=ASSISTED)
    return read, Membership.objects.select_related("user").get(pk=read.reader_id)


def test_read_without_lets_the_assisted_read_open_when_its_draft_failed_and_logs_it(build, investigator):
    live = build(readers_per_site=2, draft_rule="read_without")
    case = arrive(live.trial, live.sites[0], image(1))
    make_draft(case, _attach_model(live, investigator), status=DraftStatus.FAILED)
    read, reader = _assisted_read(live, case)
    assert [(r.case_code, r.available) for r in _worklist(reader.user, live.trial)] == [(case.code, True)]
    services.record_event(read_id=read.pk, by=reader.user, kind="opened", tab_id="t1")
    report = _submit(read, reader.user)
    assert report.draft_edit_distance is None  # no draft was shown
    read.refresh_from_db()
    deviation = Deviation.objects.get(kind="draft_not_shown")
    assert (deviation.read_id, deviation.case_id, deviation.reader_id, deviation.intercurrent) == \
        (read.pk, case.pk, reader.pk, True)
    # recorded by the platform, and its audit event names neither the reader nor the read: a deviation of one arm
    # only must not tell the investigators (conduct page, audit log) which arm the reader is in
    assert deviation.occurred_at == read.opened_at and deviation.recorded_by is None
    event = AuditEvent.objects.get(action="deviation.recorded", object_id=str(deviation.pk))
    assert event.actor is None and event.payload == {"case": case.code, "kind": "draft_not_shown"}
    # the standard read of the same case is no deviation
    standard = Read.objects.get(case=case, arm=STANDARD)
    _submit(standard, standard.reader.user)
    assert Deviation.objects.count() == 1


def test_wait_keeps_the_assisted_read_closed_when_its_draft_failed(build, investigator):
    live = build(readers_per_site=2, draft_rule="wait")
    case = arrive(live.trial, live.sites[0], image(1))
    make_draft(case, _attach_model(live, investigator), status=DraftStatus.FAILED)
    read, reader = _assisted_read(live, case)
    assert [(r.case_code, r.available) for r in _worklist(reader.user, live.trial)] == [(case.code, False)]
    events = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied, match="not available yet"):
        services.record_event(read_id=read.pk, by=reader.user, kind="opened", tab_id="t1")
    with pytest.raises(PermissionDenied, match="not available yet"):
        _submit(read, reader.user)
    read.refresh_from_db()
    assert read.status == ReadStatus.ASSIGNED and not Report.objects.filter(read=read).exists()
    assert not ReadEvent.objects.filter(read=read).exists() and not Deviation.objects.exists()
    assert AuditEvent.objects.count() == events


def test_read_without_waits_for_a_late_draft_until_the_limit(build, investigator):
    live = build(readers_per_site=2, draft_rule="read_without", draft_limit_minutes=30)
    case = arrive(live.trial, live.sites[0], image(1))
    make_draft(case, _attach_model(live, investigator), status=DraftStatus.PENDING)  # still running
    read, reader = _assisted_read(live, case)
    assert [r.available for r in _worklist(reader.user, live.trial)] == [False]
    with clock.simulated(lambda: case.arrived_at + timedelta(minutes=29)):
        assert [r.available for r in _worklist(reader.user, live.trial)] == [False]
    with clock.simulated(lambda: case.arrived_at + timedelta(minutes=31)):
        assert [r.available for r in _worklist(reader.user, live.trial)] == [True]
        services.record_event(read_id=read.pk, by=reader.user, kind="opened", tab_id="t1")
        _submit(read, reader.user)
    assert Deviation.objects.get().kind == "draft_not_shown"


def test_an_assisted_read_with_its_draft_is_no_deviation(build, investigator):
    live = build(readers_per_site=2, draft_rule="read_without")
    case = arrive(live.trial, live.sites[0], image(1))
    make_draft(case, _attach_model(live, investigator))
    read, reader = _assisted_read(live, case)
    services.record_event(read_id=read.pk, by=reader.user, kind="opened", tab_id="t1")
    assert _submit(read, reader.user).draft_edit_distance is not None
    assert not Deviation.objects.exists()


def test_a_read_submitted_past_the_time_window_is_a_deviation(build):
    live = build(readers_per_site=2, read_window_hours=2)
    early, late = (arrive(live.trial, live.sites[0], image(seed)) for seed in (1, 2))
    on_time = Read.objects.get(case=early, arm=STANDARD)
    _submit(on_time, on_time.reader.user)
    assert not Deviation.objects.exists()
    overdue = Read.objects.get(case=late, arm=STANDARD)
    with clock.simulated(lambda: late.arrived_at + timedelta(hours=3)):
        _submit(overdue, overdue.reader.user)
    deviation = Deviation.objects.get()
    assert (deviation.kind, deviation.read_id, deviation.intercurrent) == ("past_window", overdue.pk, True)
    assert "3.0 h" in deviation.description


# ------------------------------------------------------------------------------------------------ outside one's own


def test_a_reader_cannot_open_a_case_of_another_site_or_arm(build):
    live = build(sites=("site-a", "site-b"), readers_per_site=2)
    site_a, site_b = live.sites
    case = arrive(live.trial, site_a, image(1))
    target = Read.objects.get(case=case, arm=STANDARD)
    [same_site_other_arm] = live.readers_of(site=site_a, arm=ASSISTED)
    [other_site_same_arm] = live.readers_of(site=site_b, arm=STANDARD)
    counts = (ReadEvent.objects.count(), ReportDraft.objects.count(), Report.objects.count(),
              AuditEvent.objects.count(), Deviation.objects.count())
    for intruder in (same_site_other_arm, other_site_same_arm):
        with pytest.raises(PermissionDenied, match="not on your worklist"):
            selectors.own_read(read_id=target.pk, user=intruder.user)
        with pytest.raises(PermissionDenied, match="not on your worklist"):
            services.record_event(read_id=target.pk, by=intruder.user, kind="opened", tab_id="t1")
        with pytest.raises(PermissionDenied, match="not on your worklist"):
            services.autosave(read_id=target.pk, by=intruder.user, findings="x", impression="y", finding_flags={},
                              base_version=None, tab_id="t1")
        with pytest.raises(PermissionDenied, match="not on your worklist"):
            _submit(target, intruder.user)
        assert target.pk not in [r.id for r in _worklist(intruder.user, live.trial)]
    target.refresh_from_db()
    assert (target.status, target.opened_at, target.submitted_at) == (ReadStatus.ASSIGNED, None, None)
    assert counts == (ReadEvent.objects.count(), ReportDraft.objects.count(), Report.objects.count(),
                      AuditEvent.objects.count(), Deviation.objects.count())


# ------------------------------------------------------------------------------------------------ life cycle


def test_paused_and_closed_trials_keep_reading_what_was_routed(build, investigator):
    live = build(readers_per_site=2)
    case = arrive(live.trial, live.sites[0], image(1))
    trial_services.transition_trial(trial=live.trial, by=investigator, to="paused", reason="Holiday")
    first = Read.objects.get(case=case, arm=STANDARD)
    _submit(first, first.reader.user)
    trial_services.transition_trial(trial=live.trial, by=investigator, to="closed")
    assert Read.objects.get(pk=first.pk).status == ReadStatus.SUBMITTED
    second = Read.objects.get(case=case, arm=ASSISTED)
    assert second.status == ReadStatus.ASSIGNED  # still on its reader's worklist, waiting for its draft
    assert [r.case_code for r in _worklist(first.reader.user, live.trial)] == [case.code]


# ------------------------------------------------------------------------------------------------ scoring


def test_a_cases_scoring_items_are_built_once_both_its_reports_are_final(build, investigator, make_user):
    from scoring.models import Item

    live = build(readers_per_site=2, experts_per_item=1)
    expert = make_user("expert")
    trial_services.add_member(trial=live.trial, by=investigator, user=expert, role=Role.EXPERT)
    case, other = arrive(live.trial, live.sites[0], image(1)), arrive(live.trial, live.sites[0], image(2))
    make_draft(case, _attach_model(live, investigator))
    assisted, standard = (Read.objects.get(case=case, arm=arm) for arm in (ASSISTED, STANDARD))
    with committed():  # the submit announces reports_final on commit
        _submit(standard, standard.reader.user)
    assert not Item.objects.filter(case=case).exists()  # one report of two: nothing to compare yet
    with committed():
        _submit(assisted, assisted.reader.user, impression="Small left effusion.")
    kinds = Counter(Item.objects.filter(trial=live.trial, case=case).values_list("kind", flat=True))
    assert kinds == {"reference": 1, "quality": 2, "pair": 1}  # the image, each report alone, the two together
    assert not Item.objects.filter(case=other).exists()  # only the case whose reports are final
