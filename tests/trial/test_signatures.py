"""Electronic signatures and two-person unblinding (issue 13 item 7): re-authentication with the password and the
second factor, the meaning stated and stored, bound to the content hash; nothing changes on a refusal."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django_otp.plugins.otp_static.models import StaticDevice

from tests.signing import credentials, move, proof
from trial import audit, services, signatures
from trial.errors import IllegalTransition, SignatureRefused
from trial.models import AuditEvent, AuditHead, Role, Signature, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def scoring_trial(enrolling_trial, investigator, make_user):
    """A trial in scoring with a statistician (the data do not matter here: only the acts that fix them)."""
    from trial.models import Trial

    statistician = make_user("stella-stat")
    services.add_member(trial=enrolling_trial, by=investigator, user=statistician, role=Role.STATISTICIAN)
    Trial.objects.filter(pk=enrolling_trial.pk).update(status=Status.SCORING)  # the path there is tested elsewhere
    enrolling_trial.refresh_from_db()
    return enrolling_trial, statistician


def _state(trial):
    trial.refresh_from_db()
    return trial.status, Signature.objects.count(), AuditEvent.objects.filter(trial=trial).count()


def test_locking_is_refused_as_a_plain_transition_and_needs_a_signature(scoring_trial, investigator):
    trial, _ = scoring_trial
    with pytest.raises(IllegalTransition, match="electronically signed"):
        services.transition_trial(trial=trial, by=investigator, to=Status.LOCKED)
    given = signatures.reauthenticate(user=investigator, credentials=credentials(investigator))
    head = AuditHead.objects.get(pk=1).last_hash  # (after the recovery code's own event)
    locked = services.lock_trial(trial=trial, by=investigator, proof=given)
    assert locked.status == Status.LOCKED
    signature = Signature.objects.get(trial=trial)
    assert signature.meaning == Signature.Meaning.LOCK and signature.content_hash == head
    assert signature.signer == investigator and signature.method == "password+second factor"
    event = AuditEvent.objects.filter(action="signature.signed").latest("id")
    assert event.payload["statement"] == Signature.Meaning.LOCK.label and event.payload["content_hash"] == head
    with pytest.raises(ValueError, match="never changed"):
        signature.save()


def test_a_wrong_password_or_code_is_refused_and_changes_nothing_but_the_throttle(scoring_trial, investigator):
    trial, _ = scoring_trial
    good = credentials(investigator)
    before = _state(trial)
    with pytest.raises(SignatureRefused, match="password is not right"):
        signatures.reauthenticate(user=investigator,
                                  credentials=signatures.Credentials(password="nope", code=good.code))
    with pytest.raises(SignatureRefused, match="code from your authenticator is not right"):
        signatures.reauthenticate(user=investigator, credentials=signatures.Credentials(password=good.password,
                                                                                        code="00000000"))
    assert _state(trial) == before
    device = StaticDevice.objects.get(user=investigator)
    assert device.throttling_failure_count == 1  # the failed code counts, although nothing was signed


def test_without_a_second_factor_there_is_no_signature(scoring_trial, investigator, settings):
    trial, _ = scoring_trial
    from tests.conftest import PASSWORD

    with pytest.raises(SignatureRefused, match="set up an authenticator"):
        signatures.reauthenticate(user=investigator, credentials=signatures.Credentials(password=PASSWORD))
    settings.CXR_SECOND_FACTOR = False  # a development set-up: the password alone, and the method says so
    assert "password only" in signatures.reauthenticate(
        user=investigator, credentials=signatures.Credentials(password=PASSWORD)).method


def test_a_proof_is_for_its_own_person(scoring_trial, investigator, make_user):
    trial, statistician = scoring_trial
    with pytest.raises(SignatureRefused, match="person who acts"):
        services.lock_trial(trial=trial, by=investigator, proof=proof(statistician))
    assert _state(trial)[0] == Status.SCORING


def test_unblinding_needs_an_investigator_and_then_another_person_a_statistician(scoring_trial, investigator,
                                                                                make_user):
    trial, statistician = scoring_trial
    trial = move(trial, by=investigator, to=Status.LOCKED)
    with pytest.raises(IllegalTransition, match="two people"):
        services.transition_trial(trial=trial, by=investigator, to=Status.UNBLINDED)
    with pytest.raises(services.Conflict, match="Nobody has asked"):
        services.approve_unblinding(trial=trial, by=statistician, proof=proof(statistician))
    with pytest.raises(PermissionDenied):
        services.request_unblinding(trial=trial, by=statistician, proof=proof(statistician))  # not an investigator
    request = services.request_unblinding(trial=trial, by=investigator, proof=proof(investigator))
    with pytest.raises(services.Conflict, match="already asked"):
        services.request_unblinding(trial=trial, by=investigator, proof=proof(investigator))
    trial.refresh_from_db()
    assert trial.status == Status.LOCKED  # one person is not enough
    # someone who is investigator and statistician of the trial cannot be both people
    both = make_user("ivy-both")
    services.add_member(trial=trial, by=investigator, user=both, role=Role.INVESTIGATOR)
    services.add_member(trial=trial, by=investigator, user=both, role=Role.STATISTICIAN)
    unblinded = services.approve_unblinding(trial=trial, by=statistician, proof=proof(statistician))
    assert unblinded.status == Status.UNBLINDED
    event = AuditEvent.objects.filter(action="trial.status_changed", trial=trial).latest("id")
    assert event.payload["to"] == "unblinded"
    assert event.payload["requested_by"] == investigator.username
    assert event.payload["approved_by"] == statistician.username
    approval = Signature.objects.get(meaning=Signature.Meaning.UNBLIND_APPROVE)
    assert approval.content_hash == request.content_hash  # both signed the same locked data
    assert audit.verify().intact


def test_the_one_who_asked_cannot_approve(scoring_trial, investigator, make_user):
    trial, _ = scoring_trial
    both = make_user("ivy-both")
    services.add_member(trial=trial, by=investigator, user=both, role=Role.INVESTIGATOR)
    services.add_member(trial=trial, by=investigator, user=both, role=Role.STATISTICIAN)
    trial = move(trial, by=investigator, to=Status.LOCKED)
    services.request_unblinding(trial=trial, by=both, proof=proof(both))
    with pytest.raises(services.Conflict, match="cannot also approve"):
        services.approve_unblinding(trial=trial, by=both, proof=proof(both))
    trial.refresh_from_db()
    assert trial.status == Status.LOCKED


def test_the_pages_take_both_signatures_and_show_them(client, scoring_trial, investigator):
    trial, statistician = scoring_trial
    client.force_login(investigator)
    page = client.get(f"/t/{trial.code}/lock/").content.decode()
    assert Signature.Meaning.LOCK.label in page and 'name="password"' in page
    r = client.post(f"/t/{trial.code}/lock/", {"password": "wrong", "code": "1"})
    assert r.status_code == 200 and "password is not right" in r.content.decode()
    assert _state(trial)[0] == Status.SCORING
    good = credentials(investigator)
    r = client.post(f"/t/{trial.code}/lock/", {"password": good.password, "code": good.code})
    assert r.status_code == 302 and _state(trial)[0] == Status.LOCKED
    good = credentials(investigator)
    r = client.post(f"/t/{trial.code}/unblinding/", {"password": good.password, "code": good.code})
    assert r.status_code == 302 and _state(trial)[0] == Status.LOCKED
    client.force_login(statistician)
    page = client.get(f"/t/{trial.code}/unblinding/").content.decode()
    assert "waits for a statistician" in page and Signature.Meaning.UNBLIND_APPROVE.label in page
    good = credentials(statistician)
    r = client.post(f"/t/{trial.code}/unblinding/", {"password": good.password, "code": good.code})
    assert r.status_code == 302 and _state(trial)[0] == Status.UNBLINDED
    page = client.get(f"/t/{trial.code}/unblinding/").content.decode()
    assert page.count("signed content SHA-256") == 3 and page.count("password+second factor") == 3  # lock, ask, approve


def test_the_api_signs_with_password_and_code_in_the_body(scoring_trial, investigator):
    from rest_framework.test import APIClient

    trial, statistician = scoring_trial

    def api(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    base = f"/api/trials/{trial.code}"
    assert api(investigator).post(f"{base}/lock/", {"password": "x"}, format="json").status_code == 403
    assert _state(trial)[0] == Status.SCORING
    r = api(investigator).post(f"{base}/lock/", vars(credentials(investigator)), format="json")
    assert r.status_code == 200 and r.json()["status"] == "locked"
    early = api(statistician).post(f"{base}/unblinding/", vars(credentials(statistician)), format="json")
    assert early.status_code == 403 and _state(trial)[0] == Status.LOCKED
    asked = api(investigator).post(f"{base}/unblinding/", vars(credentials(investigator)), format="json")
    assert asked.status_code == 202 and asked.json()["status"] == "locked"
    again = api(investigator).post(f"{base}/unblinding/", vars(credentials(investigator)), format="json")
    assert again.status_code == 403
    done = api(statistician).post(f"{base}/unblinding/", vars(credentials(statistician)), format="json")
    assert done.status_code == 200 and done.json()["status"] == "unblinded"
