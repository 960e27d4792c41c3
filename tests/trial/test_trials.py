"""Trials, sites, members and status: the rules investigators meet, and the refusals they get."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from core.errors import ServiceError, WrongStatus
from trial import selectors, services
from trial.access import access_for
from trial.errors import DuplicateCode, IllegalTransition
from trial.models import AuditEvent, Membership, Role, Site, Status, Trial


def test_creator_becomes_investigator_with_a_pseudonym(trial, investigator):
    membership = Membership.objects.get(trial=trial, user=investigator)
    assert membership.role == Role.INVESTIGATOR
    assert membership.pseudonym == "I01"


def test_new_trial_has_the_six_default_findings_and_five_experts(trial):
    assert trial.findings == ["pleural effusion", "pneumothorax", "consolidation", "atelectasis",
                              "cardiomegaly", "lung opacity"]
    assert trial.experts_per_item == 5
    assert trial.status == Status.SETUP
    assert len(bytes(trial.randomization_seed)) == 32


def test_user_without_permission_cannot_create_a_trial(outsider):
    with pytest.raises(ServiceError, match="not allowed to create trials"):
        services.create_trial(by=outsider, code="x", title="X")
    assert not Trial.objects.exists()


def test_duplicate_trial_code_is_refused_and_nothing_written(trial, investigator):
    events = AuditEvent.objects.count()
    with pytest.raises(DuplicateCode, match="already used"):
        services.create_trial(by=investigator, code="jpc-1", title="Another")
    assert Trial.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_even_number_of_experts_is_refused(investigator):
    with pytest.raises(ServiceError, match="must be odd"):
        services.create_trial(by=investigator, code="even", title="Even", experts_per_item=4)
    assert not Trial.objects.filter(code="even").exists()


def test_duplicate_site_code_is_refused(trial, site, investigator):
    with pytest.raises(DuplicateCode, match="site code “site-a” is already used"):
        services.add_site(trial=trial, by=investigator, code="site-a", name="Again")
    assert Site.objects.filter(trial=trial).count() == 1


def test_same_site_code_is_fine_in_another_trial(trial, site, investigator):
    other = services.create_trial(by=investigator, code="other", title="Other")
    services.add_site(trial=other, by=investigator, code="site-a", name="Hospital A")
    assert Site.objects.filter(code="site-a").count() == 2


def test_status_moves_one_step_forward_and_is_audited(enrolling_trial):
    assert enrolling_trial.status == Status.ENROLLING
    event = AuditEvent.objects.filter(action="trial.status_changed").latest("id")
    assert event.payload == {"from": "setup", "to": "enrolling"}


@pytest.mark.parametrize("target", ["reading", "scoring", "locked", "unblinded", "setup"])
def test_illegal_transition_from_setup_is_refused(trial, site, investigator, target):
    with pytest.raises(IllegalTransition, match="cannot move to"):
        services.transition_trial(trial=trial, by=investigator, to=target)
    trial.refresh_from_db()
    assert trial.status == Status.SETUP


def test_enrolment_needs_a_site(trial, investigator):
    with pytest.raises(IllegalTransition, match="at least one site"):
        services.transition_trial(trial=trial, by=investigator, to="enrolling")


def test_reading_needs_readers_in_both_arms_and_cases(enrolling_trial, investigator):
    with pytest.raises(IllegalTransition, match="at least one case"):
        services.transition_trial(trial=enrolling_trial, by=investigator, to="reading")


def test_design_settings_freeze_once_enrolling(enrolling_trial, investigator):
    with pytest.raises(WrongStatus, match="frozen"):
        services.update_trial_settings(trial=enrolling_trial, by=investigator, experts_per_item=3)
    enrolling_trial.refresh_from_db()
    assert enrolling_trial.experts_per_item == 5


def test_findings_are_editable_in_setup_and_normalised(trial, investigator):
    services.update_trial_settings(trial=trial, by=investigator, findings=["Pneumothorax", "  Rib  fracture "])
    trial.refresh_from_db()
    assert trial.findings == ["pneumothorax", "rib fracture"]
    event = AuditEvent.objects.filter(action="trial.settings_changed").latest("id")
    assert event.payload["before"]["findings"][0] == "pleural effusion"


def test_duplicate_findings_are_refused(trial, investigator):
    with pytest.raises(ServiceError, match="only once"):
        services.update_trial_settings(trial=trial, by=investigator, findings=["effusion", "Effusion"])


def test_non_member_gets_the_same_refusal_as_for_a_missing_trial(trial, outsider):
    with pytest.raises(PermissionDenied) as existing:
        access_for(user=outsider, code=trial.code)
    with pytest.raises(PermissionDenied) as missing:
        access_for(user=outsider, code="no-such-trial")
    assert str(existing.value) == str(missing.value) == selectors.NO_ACCESS


def test_reader_cannot_change_settings(trial, site, investigator, make_user):
    reader = make_user("rita")
    services.add_member(trial=trial, by=investigator, user=reader, role=Role.READER, site=site)
    with pytest.raises(PermissionDenied):
        services.update_trial_settings(trial=trial, by=reader, title="Hijacked")
    trial.refresh_from_db()
    assert trial.title == "Janus-Pro-CXR replication"


def test_one_person_may_hold_several_roles_in_different_trials(trial, site, investigator, make_user):
    person = make_user("pat")
    other = services.create_trial(by=investigator, code="t2", title="Second")
    services.add_member(trial=trial, by=investigator, user=person, role=Role.READER, site=site)
    services.add_member(trial=other, by=investigator, user=person, role=Role.EXPERT)
    assert access_for(user=person, code=trial.code).roles == {"reader"}
    assert access_for(user=person, code=other.code).roles == {"expert"}


def test_same_role_twice_is_refused(trial, site, investigator, make_user):
    person = make_user("pat")
    services.add_member(trial=trial, by=investigator, user=person, role=Role.EXPERT)
    with pytest.raises(DuplicateCode, match="already holds the role"):
        services.add_member(trial=trial, by=investigator, user=person, role=Role.EXPERT)


def test_paired_parallel_reader_needs_a_site(trial, site, investigator, make_user):
    with pytest.raises(ServiceError, match="must belong to a site"):
        services.add_member(trial=trial, by=investigator, user=make_user("rita"), role=Role.READER)


def test_invitation_of_unknown_email_creates_an_invitation_and_mail(trial, investigator, mailoutbox,
                                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation = services.invite_member(trial=trial, by=investigator, email="New.Expert@Example.org",
                                            role=Role.EXPERT)
    assert invitation.email == "new.expert@example.org"
    assert len(mailoutbox) == 1 and invitation.token in mailoutbox[0].body


def test_accepting_an_invitation_makes_a_membership_once(trial, investigator, make_user):
    invitation = services.invite_member(trial=trial, by=investigator, email="eve@elsewhere.org", role=Role.EXPERT)
    eve = make_user("eve-new", email="Eve@Elsewhere.org")  # the account made after the invitation was sent
    membership = services.accept_invitation(token=invitation.token, user=eve)
    assert membership.role == Role.EXPERT and membership.pseudonym == "E01"
    with pytest.raises(ServiceError, match="not valid, has expired or was already used"):
        services.accept_invitation(token=invitation.token, user=eve)


def test_an_invited_person_joins_with_a_new_account_in_one_audited_step(trial, investigator):
    from django.contrib.auth import get_user_model

    invitation = services.invite_member(trial=trial, by=investigator, email="Sam@Stat.org", role=Role.STATISTICIAN)
    membership = services.join_by_invitation(token=invitation.token, username="sam",
                                             password="Correct-Horse-Battery-9")
    user = get_user_model().objects.get(username="sam")
    assert membership.user == user and membership.role == Role.STATISTICIAN and user.email == "sam@stat.org"
    assert user.check_password("Correct-Horse-Battery-9")
    invitation.refresh_from_db()
    assert invitation.accepted_by == user and invitation.accepted_at is not None
    actions = list(AuditEvent.objects.filter(trial=trial).order_by("id").values_list("action", flat=True))
    assert actions[-3:] == ["account.created_by_invitation", "member.added", "member.invitation_accepted"]
    assert "Correct-Horse" not in str(AuditEvent.objects.filter(action="account.created_by_invitation").get().payload)


def test_a_refused_acceptance_leaves_no_account_behind(trial, site, investigator, make_user):
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.count()
    invitation = services.invite_member(trial=trial, by=investigator, email="late@reader.org", role=Role.READER,
                                        site=site)
    Trial.objects.filter(pk=trial.pk).update(status=Status.READING)  # reading started before the link was used
    with pytest.raises(WrongStatus, match="Readers can join only while they can be randomized"):
        services.join_by_invitation(token=invitation.token, username="late", password="Correct-Horse-Battery-9")
    make_user("taken")
    with pytest.raises(DuplicateCode, match="This username is taken"):
        services.join_by_invitation(token=invitation.token, username="Taken", password="Correct-Horse-Battery-9")
    with pytest.raises(ServiceError) as weak:
        services.join_by_invitation(token=invitation.token, username="late", password="late")
    assert weak.value.field == "password"
    assert get_user_model().objects.count() == users + 1  # "taken" only
    assert not Membership.objects.filter(trial=trial, role=Role.READER).exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None
    assert not AuditEvent.objects.filter(action__in=["account.created_by_invitation",
                                                     "member.invitation_accepted"]).exists()


def test_readers_joining_during_enrolment_are_randomized_at_once(enrolling_trial, site, investigator, make_user):
    membership = services.add_member(trial=enrolling_trial, by=investigator, user=make_user("rita"),
                                     role=Role.READER, site=site)
    assert membership.allocation.arm in ("assisted", "standard")
    assert membership.allocation.stratum == "site-a"


def test_readers_of_setup_are_randomized_when_enrolment_opens(trial, site, investigator, make_user):
    readers = [services.add_member(trial=trial, by=investigator, user=make_user(f"r{i}"), role=Role.READER,
                                   site=site) for i in range(4)]
    services.transition_trial(trial=trial, by=investigator, to="enrolling")
    arms = [Membership.objects.get(pk=r.pk).allocation.arm for r in readers]
    assert len(arms) == 4 and set(arms) <= {"assisted", "standard"}
