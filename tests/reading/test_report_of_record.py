"""The trial's release policy names the clinical report of record, the one report that may leave the platform: none
(research only, the default), the signed standard-care report, the signed assisted report, or a report the senior
writes from both and signs. The policy is frozen once the trial opens."""
from __future__ import annotations

from datetime import timedelta

import pytest

from core import clock
from core.errors import Conflict, ServiceError, WrongStatus
from reading import selectors, services
from reading.models import Read, RecordReport
from tests.live import arrive, committed, image, open_trial
from tests.signing import proof
from trial import services as trial_services
from trial.access import access_for
from trial.models import AuditEvent, Case, Role, Signature

pytestmark = pytest.mark.django_db


def _live(investigator, make_user, policy: str):
    # no model: the assisted read opens without a draft once the draft rule's limit has passed (see _read_and_sign)
    live = open_trial(investigator=investigator, make_user=make_user, code=f"ror-{policy}", release_policy=policy,
                      require_signoff=True, draft_rule="read_without")
    senior = make_user(f"senior-{policy}")
    trial_services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    case = arrive(live.trial, live.sites[0], image(1))
    return live, senior, case


def _read_and_sign(case, senior, *, sign=("assisted", "standard")):
    Case.objects.filter(pk=case.pk).update(arrived_at=clock.now() - timedelta(days=1))  # past the draft limit
    for read in Read.objects.filter(case=case).select_related("reader__user"):
        user = read.reader.user
        with committed():
            services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t")
            report = services.submit_report(read_id=read.pk, by=user, findings=f"{read.arm} findings",
                                            impression=f"{read.arm} impression", finding_flags={}, tab_id="t")
        if read.arm in sign:
            with committed():
                services.sign_report(report=report, by=senior, proof=proof(senior))


@pytest.mark.parametrize("policy", ["standard", "assisted"])
def test_the_signed_report_of_the_named_arm_is_the_report_of_record(investigator, make_user, policy):
    live, senior, case = _live(investigator, make_user, policy)
    _read_and_sign(case, senior, sign=())
    assert selectors.report_of_record(case=case) is None  # submitted is not enough: never an unsigned report
    _read_and_sign_remaining = Read.objects.get(case=case, arm=policy).reports.get()
    with committed():
        services.sign_report(report=_read_and_sign_remaining, by=senior, proof=proof(senior))
    record = selectors.report_of_record(case=case)
    assert record.source == policy and record.impression == f"{policy} impression"
    assert record.signed_by_id == senior.pk


def test_a_research_only_trial_releases_nothing(investigator, make_user):
    live, senior, case = _live(investigator, make_user, "research_only")
    _read_and_sign(case, senior)
    assert selectors.report_of_record(case=case) is None
    assert selectors.record_queue(access=access_for(user=senior, code=live.trial.code)) == []


def test_the_senior_writes_the_report_of_record_from_both_signed_reports(investigator, make_user):
    live, senior, case = _live(investigator, make_user, "senior")
    access = access_for(user=senior, code=live.trial.code)
    _read_and_sign(case, senior, sign=("assisted",))
    assert selectors.record_queue(access=access) == []  # one report still unsigned
    with pytest.raises(WrongStatus, match="both are not signed"):
        services.write_report_of_record(case_id=case.pk, by=senior, findings="", impression="x",
                                        proof=proof(senior))
    with committed():
        services.sign_report(report=Read.objects.get(case=case, arm="standard").reports.get(), by=senior,
                             proof=proof(senior))
    [item] = selectors.record_queue(access=access)
    # the two reports as 1 and 2, never named by arm
    assert item["case"] == case and {r["label"] for r in item["reports"]} == {"1", "2"}
    assert all(set(r) == {"label", "findings", "impression"} for r in item["reports"])
    with pytest.raises(ServiceError, match="impression is required"):
        services.write_report_of_record(case_id=case.pk, by=senior, findings="f", impression="  ", proof=proof(senior))
    assert not RecordReport.objects.exists()
    events = AuditEvent.objects.count()
    record = services.write_report_of_record(case_id=case.pk, by=senior, findings="Both agree.",
                                             impression="No acute disease.", proof=proof(senior))
    assert selectors.report_of_record(case=case).source == "senior"
    assert selectors.report_of_record(case=case).impression == "No acute disease."
    assert Signature.objects.filter(meaning="record_report", object_id=str(record.pk), signer=senior).exists()
    assert "report_of_record.written" in AuditEvent.objects.filter(id__gt=events).values_list("action", flat=True)
    assert selectors.record_queue(access=access) == []
    with pytest.raises(Conflict, match="already written"):
        services.write_report_of_record(case_id=case.pk, by=senior, findings="", impression="again",
                                        proof=proof(senior))
    with pytest.raises(PermissionError):
        record.impression = "changed"
        record.save()


def test_only_a_senior_of_the_trial_who_read_neither_report_writes_it(investigator, make_user):
    live, senior, case = _live(investigator, make_user, "senior")
    _read_and_sign(case, senior)
    reader = Read.objects.filter(case=case).first().reader.user
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.write_report_of_record(case_id=case.pk, by=reader, findings="", impression="x", proof=proof(reader))
    with pytest.raises(PermissionDenied):
        services.write_report_of_record(case_id=case.pk, by=investigator, findings="", impression="x",
                                        proof=proof(investigator))
    assert not RecordReport.objects.exists()


def test_the_release_policy_is_frozen_once_the_trial_opens(investigator, make_user):
    live, senior, case = _live(investigator, make_user, "standard")
    with pytest.raises(WrongStatus, match="frozen"):
        trial_services.update_trial_settings(trial=live.trial, by=investigator, release_policy="assisted")
    live.trial.refresh_from_db()
    assert live.trial.release_policy == "standard"
