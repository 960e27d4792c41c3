"""Investigator pages: login, create a trial with crispy forms, manage it; members only."""
from __future__ import annotations

from tests.conftest import PASSWORD
from trial.models import Invitation, Membership, Trial


def test_login_page_and_login(client, outsider):
    assert client.get("/accounts/login/").status_code == 200
    r = client.post("/accounts/login/", {"username": "oscar", "password": PASSWORD})
    assert r.status_code == 302
    assert client.get("/").status_code == 200


def test_an_investigator_logs_in_with_a_second_factor(client, investigator):
    r = client.post("/accounts/login/", {"username": "ines", "password": PASSWORD})
    assert r.status_code == 302
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/")


def test_pages_require_login(client, trial):
    r = client.get(f"/t/{trial.code}/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_investigator_creates_a_trial_through_the_form(client, investigator):
    client.force_login(investigator)
    page = client.get("/trials/new/").content.decode()
    assert "pleural effusion" in page and "bootstrap" in page
    r = client.post("/trials/new/", {
        "code": "web-1", "title": "Web trial", "registration_id": "NCT123", "design": "paired_parallel",
        "findings": "pneumothorax\npleural effusion", "experts_per_item": 3, "allow_no_preference": "on",
        "washout_days": 28, "ratio_assisted": 1, "ratio_standard": 1, "block_multiples": "1, 2",
    })
    assert r.status_code == 302
    trial = Trial.objects.get(code="web-1")
    assert trial.findings == ["pneumothorax", "pleural effusion"] and trial.block_multiples == [1, 2]


def test_form_shows_the_service_refusal_and_keeps_the_input(client, investigator):
    client.force_login(investigator)
    r = client.post("/trials/new/", {
        "code": "web-2", "title": "My typed title", "design": "paired_parallel", "findings": "pneumothorax",
        "experts_per_item": 4, "washout_days": 28, "ratio_assisted": 1, "ratio_standard": 1, "block_multiples": "1",
    })
    page = r.content.decode()
    assert r.status_code == 200 and "must be odd" in page and "My typed title" in page
    assert not Trial.objects.filter(code="web-2").exists()


def test_site_invite_and_transition_through_pages(client, trial, investigator):
    client.force_login(investigator)
    client.post(f"/t/{trial.code}/sites/add/", {"code": "site-a", "name": "Hospital A"})
    client.post(f"/t/{trial.code}/members/invite/", {"email": "x@y.org", "role": "expert"})
    assert Invitation.objects.filter(trial=trial, email="x@y.org").exists()
    client.post(f"/t/{trial.code}/status/", {"to": "enrolling"})
    trial.refresh_from_db()
    assert trial.status == "enrolling"
    page = client.get(f"/t/{trial.code}/").content.decode()
    assert "Enrolling" in page and "Hospital A" in page


def test_illegal_transition_from_the_page_shows_the_reason(client, trial, investigator):
    client.force_login(investigator)
    r = client.post(f"/t/{trial.code}/status/", {"to": "unblinded"}, follow=True)
    assert "cannot move to" in r.content.decode()
    trial.refresh_from_db()
    assert trial.status == "setup"


def test_invited_person_creates_an_account_and_joins(client, trial, investigator):
    from trial import services

    invitation = services.invite_member(trial=trial, by=investigator, email="sam@stat.org", role="statistician")
    r = client.post(f"/invitations/{invitation.token}/", {"username": "sam", "password": "Correct-Horse-Battery-9"})
    assert r.status_code == 302
    membership = Membership.objects.get(trial=trial, user__username="sam")
    assert membership.role == "statistician"


def test_an_invitation_refused_on_the_page_says_why_and_creates_no_account(client, trial, site, investigator):
    from django.contrib.auth import get_user_model

    from trial import services

    invitation = services.invite_member(trial=trial, by=investigator, email="late@reader.org", role="reader",
                                        site=site)
    Trial.objects.filter(pk=trial.pk).update(status="reading")
    r = client.post(f"/invitations/{invitation.token}/", {"username": "late", "password": "Correct-Horse-Battery-9"})
    assert r.status_code == 200 and "Readers can join only while they can be randomized" in r.content.decode()
    assert not get_user_model().objects.filter(username="late").exists()
    assert "_auth_user_id" not in client.session
    assert not Invitation.objects.get(pk=invitation.pk).accepted_at


def test_a_used_invitation_link_is_not_found(client, trial, investigator, make_user):
    from trial import services

    invitation = services.invite_member(trial=trial, by=investigator, email="sam@stat.org", role="statistician")
    services.accept_invitation(token=invitation.token, user=make_user("sam", email="sam@stat.org"))
    assert client.get(f"/invitations/{invitation.token}/").status_code == 404


def test_outsider_gets_403_on_every_trial_page(client, trial, outsider):
    client.force_login(outsider)
    for path in ["", "settings/", "cases/", "cases/upload/", "audit/"]:
        r = client.get(f"/t/{trial.code}/{path}")
        assert r.status_code == 403, path
        assert trial.title.encode() not in r.content


def test_statistician_cannot_open_the_case_list(client, trial, investigator, make_user):
    from trial import services

    stat = make_user("stan")
    services.add_member(trial=trial, by=investigator, user=stat, role="statistician")
    client.force_login(stat)
    assert client.get(f"/t/{trial.code}/").status_code == 200
    assert client.get(f"/t/{trial.code}/cases/").status_code == 403
    assert client.get(f"/t/{trial.code}/audit/").status_code == 403
