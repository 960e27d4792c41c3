"""Who may join a trial, as what: a reader holds no other role in the same trial; an invitation works only for the
invited e-mail address, once, before it expires (today a reader with the link became investigator)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from trial import services
from trial.errors import InvalidInvitation, NotYourInvitation, RoleConflict
from trial.models import AuditEvent, Invitation, Membership, Role


def _nothing_written(trial, before: tuple[int, int]) -> bool:
    return (Membership.objects.filter(trial=trial).count(), AuditEvent.objects.count()) == before


def _counts(trial) -> tuple[int, int]:
    return Membership.objects.filter(trial=trial).count(), AuditEvent.objects.count()


# ------------------------------------------------------------------------------------------ role conflicts


@pytest.fixture
def reader(trial, site, investigator, make_user):
    user = make_user("rita")
    services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
    return user


@pytest.mark.parametrize("role", [Role.SENIOR, Role.EXPERT, Role.INVESTIGATOR, Role.STATISTICIAN])
def test_a_reader_cannot_take_another_role_in_the_same_trial(trial, investigator, reader, role):
    before = _counts(trial)
    with pytest.raises(RoleConflict) as refused:
        services.add_member(trial=trial, by=investigator, user=reader, role=role)
    assert refused.value.message == (f"rita is a reader in this trial and cannot also be {role}: a reader may hold no "
                                     "other role in the same trial.")
    assert refused.value.field == "role" and refused.value.status_code == 409
    assert _nothing_written(trial, before)


@pytest.mark.parametrize("role", [Role.SENIOR, Role.EXPERT, Role.INVESTIGATOR, Role.STATISTICIAN])
def test_someone_with_another_role_cannot_become_a_reader(trial, site, investigator, make_user, role):
    person = make_user("pat")
    if role != Role.INVESTIGATOR:
        services.add_member(trial=trial, by=investigator, user=person, role=role)
    else:
        person = investigator
    before = _counts(trial)
    with pytest.raises(RoleConflict, match="cannot also be a reader"):
        services.add_member(trial=trial, by=investigator, user=person, role=Role.READER, site=site)
    assert _nothing_written(trial, before)


def test_a_reader_may_hold_other_roles_in_other_trials_and_non_readers_may_combine(trial, site, investigator,
                                                                                   reader, make_user):
    other = services.create_trial(by=investigator, code="other", title="Other")
    services.add_member(trial=other, by=investigator, user=reader, role=Role.EXPERT)
    person = make_user("pat")
    services.add_member(trial=trial, by=investigator, user=person, role=Role.SENIOR)
    services.add_member(trial=trial, by=investigator, user=person, role=Role.STATISTICIAN)
    assert set(Membership.objects.filter(trial=trial, user=person).values_list("role", flat=True)) == {
        Role.SENIOR, Role.STATISTICIAN}


def test_the_invite_page_says_why_a_reader_cannot_be_added_again(client, trial, investigator, reader):
    client.force_login(investigator)
    r = client.post(f"/t/{trial.code}/members/invite/", {"email": reader.email, "role": "expert"}, follow=True)
    assert "cannot also be expert" in r.content.decode()
    assert not Membership.objects.filter(trial=trial, user=reader, role=Role.EXPERT).exists()


def test_accepting_an_invitation_cannot_make_a_reader_an_investigator(trial, investigator, reader):
    invitation = services.invite_member(trial=trial, by=investigator, email="boss@example.org",
                                        role=Role.INVESTIGATOR)
    Invitation.objects.filter(pk=invitation.pk).update(email=reader.email)  # even if the address were the reader's
    with pytest.raises(RoleConflict):
        services.accept_invitation(token=invitation.token, user=reader)
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None


# ------------------------------------------------------------------------------------------ invitations


@pytest.fixture
def invitation(trial, investigator):
    return services.invite_member(trial=trial, by=investigator, email="Boss@Example.org", role=Role.INVESTIGATOR)


def test_a_signed_in_user_with_another_address_cannot_take_the_invitation(client, trial, invitation, make_user):
    """The attack of the review: a reader (of another trial) with the link became investigator."""
    intruder = make_user("ralph")
    before = _counts(trial)
    with pytest.raises(NotYourInvitation, match="sent to another e-mail address"):
        services.accept_invitation(token=invitation.token, user=intruder)
    assert _nothing_written(trial, before)
    client.force_login(intruder)
    page = client.get(f"/invitations/{invitation.token}/").content.decode()
    assert 'data-testid="wrong-account"' in page and "Accept as" not in page
    r = client.post(f"/invitations/{invitation.token}/")
    assert r.status_code == 403 and "sent to another e-mail address" in r.content.decode()
    assert not Membership.objects.filter(trial=trial, user=intruder).exists()
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None


def test_the_invited_address_takes_it_whatever_its_case(client, trial, invitation, make_user):
    boss = make_user("boss", email="boss@EXAMPLE.org")
    client.force_login(boss)
    assert "Accept as boss" in client.get(f"/invitations/{invitation.token}/").content.decode()
    r = client.post(f"/invitations/{invitation.token}/")
    assert r.status_code == 302
    assert Membership.objects.get(trial=trial, user=boss).role == Role.INVESTIGATOR


def test_an_invitation_works_once(trial, invitation, make_user):
    boss = make_user("boss", email="boss@example.org")
    services.accept_invitation(token=invitation.token, user=boss)
    with pytest.raises(InvalidInvitation):
        services.accept_invitation(token=invitation.token, user=boss)
    with pytest.raises(InvalidInvitation):
        services.join_by_invitation(token=invitation.token, username="boss2", password="Correct-Horse-Battery-9")
    assert Membership.objects.filter(trial=trial, user=boss).count() == 1


def test_an_invitation_expires(client, trial, invitation, make_user, settings):
    assert settings.CXR_INVITATION_DAYS == 7
    assert timedelta(days=6, hours=23) < invitation.expires_at - invitation.created_at <= timedelta(days=7, minutes=1)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    boss = make_user("boss", email="boss@example.org")
    with pytest.raises(InvalidInvitation, match="expired"):
        services.accept_invitation(token=invitation.token, user=boss)
    with pytest.raises(InvalidInvitation, match="expired"):
        services.join_by_invitation(token=invitation.token, username="newboss", password="Correct-Horse-Battery-9")
    assert client.get(f"/invitations/{invitation.token}/").status_code == 404
    assert not get_user_model().objects.filter(username="newboss").exists()
    assert not Membership.objects.filter(trial=trial, user=boss).exists()


def test_the_life_of_an_invitation_is_a_setting_and_is_in_the_mail(trial, investigator, settings, mailoutbox,
                                                                    django_capture_on_commit_callbacks):
    settings.CXR_INVITATION_DAYS = 2
    with django_capture_on_commit_callbacks(execute=True):
        invitation = services.invite_member(trial=trial, by=investigator, email="x@example.org", role=Role.EXPERT)
    assert invitation.expires_at - invitation.created_at < timedelta(days=2, minutes=1)
    assert "for x@example.org only" in mailoutbox[0].body and "works once" in mailoutbox[0].body
    event = AuditEvent.objects.filter(action="member.invited").latest("id")
    assert event.payload["expires_at"] == invitation.expires_at.isoformat()


def test_an_expired_invitation_does_not_block_a_new_one(trial, investigator, invitation):
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    again = services.invite_member(trial=trial, by=investigator, email="boss@example.org", role=Role.INVESTIGATOR)
    assert again.pk != invitation.pk


def test_joining_creates_the_account_of_the_invited_address_only(client, trial, invitation, make_user):
    r = client.post(f"/invitations/{invitation.token}/", {"username": "boss", "password": "Correct-Horse-Battery-9"})
    assert r.status_code == 302
    boss = get_user_model().objects.get(username="boss")
    assert boss.email == "boss@example.org"
    assert Membership.objects.get(trial=trial, user=boss).role == Role.INVESTIGATOR


def test_an_address_that_has_an_account_logs_in_instead_of_making_a_second_one(trial, invitation, make_user):
    make_user("boss", email="boss@example.org")
    users = get_user_model().objects.count()
    with pytest.raises(Exception, match="log in with it and open the link again"):
        services.join_by_invitation(token=invitation.token, username="boss-two", password="Correct-Horse-Battery-9")
    assert get_user_model().objects.count() == users
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None


def test_a_new_role_that_needs_a_second_factor_asks_for_it_at_once(client, trial, invitation, make_user):
    boss = make_user("boss", email="boss@example.org")
    from tests.test_second_factor import password_login

    client = password_login(boss)
    assert client.get("/").status_code == 200  # no role yet: no second factor needed
    client.post(f"/invitations/{invitation.token}/")
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/")
