"""The second factor (django-otp TOTP, recovery codes): required for investigators, statisticians, seniors and staff,
for readers and experts where their trial asks; enrolment with a QR code drawn locally; verification at login.

These tests log in through the pages (a forced login stands for a completed one: tests/conftest.py)."""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD
from trial import services
from trial.models import AuditEvent, Role


def code(device: TOTPDevice, ahead: int = 0) -> str:
    """The code the person's app shows now (`ahead` steps later: a second login within the same 30 seconds)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift + ahead):0{device.digits}d}"


def password_login(user, client: Client | None = None) -> Client:
    client = client or Client()
    r = client.post("/accounts/login/", {"username": user.get_username(), "password": PASSWORD})
    assert r.status_code == 302 and "_auth_user_id" in client.session, r.content[:500]
    return client


def time_passes(device) -> None:
    """The device's back-off after a wrong code (1 s, doubling) has run out."""
    from datetime import timedelta

    from django.utils import timezone

    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=timezone.now() - timedelta(hours=1))


def enrol(user) -> TOTPDevice:
    """An authenticator set up (as the setup page does), outside any session."""
    return TOTPDevice.objects.create(user=user, name="app", confirmed=True)


@pytest.fixture
def reader(trial, site, investigator, make_user):
    user = make_user("rita")
    services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
    return user


def test_an_investigator_without_an_authenticator_is_sent_to_set_one_up_and_then_gets_in(investigator, trial):
    client = password_login(investigator)
    r = client.get(f"/t/{trial.code}/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/?next=")
    r = client.get(r["Location"])
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/setup/")
    page = client.get(r["Location"])
    html = page.content.decode()
    # the QR code is an inline SVG drawn on the server: no request leaves the page, the CSP is unchanged
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', html)
    assert "script-src 'self'" in page["Content-Security-Policy"]
    device = TOTPDevice.objects.get(user=investigator, confirmed=False)
    key = re.search(r'data-testid="totp-key">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    import base64
    assert base64.b32decode(key + "=" * (-len(key) % 8)) == device.bin_key  # the key typed in by hand is the same
    r = client.post("/accounts/second-factor/setup/", {"code": "000000", "next": f"/t/{trial.code}/"})
    assert r.status_code == 200 and "not right" in r.content.decode()
    assert client.get(f"/t/{trial.code}/").status_code == 302  # still owed
    time_passes(device)
    r = client.post("/accounts/second-factor/setup/", {"code": code(device), "next": f"/t/{trial.code}/"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/recovery-codes/")
    codes = re.findall(r"<li>([a-z2-7]+)</li>", client.get(r["Location"]).content.decode())
    assert len(codes) == 10 and set(codes) == set(StaticToken.objects.filter(device__user=investigator)
                                                  .values_list("token", flat=True))
    assert "<li>" not in client.get("/accounts/second-factor/recovery-codes/").content.decode()  # shown once
    assert client.get(f"/t/{trial.code}/").status_code == 200
    assert AuditEvent.objects.filter(action="account.second_factor_enrolled", object_id=str(investigator.pk)).exists()


def test_an_enrolled_investigator_must_give_a_code_at_each_login(investigator, trial):
    device = enrol(investigator)
    client = password_login(investigator)
    assert client.get("/").status_code == 302
    api = client.get(f"/api/trials/{trial.code}/")
    assert api.status_code == 403 and api.json()["code"] == "second_factor_required"
    r = client.post("/accounts/second-factor/", {"code": "123456", "next": "/"})
    assert r.status_code == 200 and "not right" in r.content.decode()
    time_passes(device)
    r = client.post("/accounts/second-factor/", {"code": code(device), "next": f"/t/{trial.code}/"})
    assert r.status_code == 302 and r["Location"] == f"/t/{trial.code}/"
    assert client.get(f"/t/{trial.code}/").status_code == 200
    assert client.get(f"/api/trials/{trial.code}/").status_code == 200


def test_a_used_code_and_a_code_of_another_account_do_not_work(investigator, make_user, trial):
    device = enrol(investigator)
    first = password_login(investigator)
    assert first.post("/accounts/second-factor/", {"code": code(device)}).status_code == 302
    second = password_login(investigator)
    assert second.post("/accounts/second-factor/", {"code": code(device)}).status_code == 200  # replayed: refused
    other = make_user("olga", is_staff=True)
    other_device = enrol(other)
    client = password_login(other)
    assert client.post("/accounts/second-factor/", {"code": code(device, ahead=1)}).status_code == 200
    time_passes(other_device)
    assert client.post("/accounts/second-factor/", {"code": code(other_device, ahead=1)}).status_code == 302


def test_failed_codes_are_throttled_by_the_device(investigator):
    device = enrol(investigator)
    client = password_login(investigator)
    for expected_failures in (1, 2, 3):
        client.post("/accounts/second-factor/", {"code": "000000"})
        device.refresh_from_db()
        assert device.throttling_failure_count == expected_failures
        time_passes(device)
    client.post("/accounts/second-factor/", {"code": "000000"})
    r = client.post("/accounts/second-factor/", {"code": code(device)})
    wait = re.search(r"Wait (\d+) seconds", r.content.decode())
    assert r.status_code == 200 and 1 <= int(wait.group(1)) <= 9  # even the right code waits: 1, 2, 4, then 8 s
    time_passes(device)
    assert client.post("/accounts/second-factor/", {"code": code(device)}).status_code == 302


def test_a_recovery_code_works_once_and_its_use_is_audited(investigator, trial):
    enrol(investigator)
    recovery = services.new_recovery_codes(user=investigator)
    client = password_login(investigator)
    assert client.post("/accounts/second-factor/", {"code": recovery[0].upper()}).status_code == 302
    assert AuditEvent.objects.filter(action="account.recovery_code_used").get().payload == {"left": 9}
    again = password_login(investigator)
    assert again.post("/accounts/second-factor/", {"code": recovery[0]}).status_code == 200


def test_readers_and_experts_need_none_unless_their_trial_asks(reader, trial, investigator):
    client = password_login(reader)
    assert client.get("/").status_code == 200
    services.update_trial_settings(trial=trial, by=investigator, second_factor_for_all=True)
    client = password_login(reader)
    assert client.get("/").status_code == 302  # a new login decides again


def test_a_role_gained_during_a_session_is_enforced_at_once(reader, trial, investigator):
    """A session that needed no factor at login meets a trial whose roles need one: refused there, sent to enrol."""
    client = password_login(reader)
    other = services.create_trial(by=investigator, code="other", title="Other")
    services.add_member(trial=other, by=investigator, user=reader, role=Role.STATISTICIAN)
    assert client.get(f"/t/{trial.code}/").status_code == 200  # a reader's trial, as before
    r = client.get(f"/t/{other.code}/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/")
    r = client.get(f"/api/trials/{other.code}/")
    assert r.status_code == 403 and "second factor" in r.json()["detail"]
    assert client.get("/").status_code == 302  # from now on, for every page


def test_staff_need_a_second_factor_and_the_admin_login_is_the_same_login(make_user):
    staff = make_user("stella", is_staff=True, is_superuser=True)
    device = enrol(staff)
    client = Client()
    r = client.get("/admin/")
    assert r.status_code == 302
    r = client.get(r["Location"], follow=False)  # /admin/login/?next=/admin/
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=")
    r = client.post("/accounts/login/?next=/admin/", {"username": "stella", "password": PASSWORD, "next": "/admin/"})
    assert r.status_code == 302
    assert client.get("/admin/").status_code == 302  # to the second factor
    r = client.post("/accounts/second-factor/", {"code": code(device), "next": "/admin/"})
    assert r["Location"] == "/admin/" and client.get("/admin/").status_code == 200


def test_posting_to_the_admins_own_login_form_logs_nobody_in(make_user):
    make_user("stella", is_staff=True, is_superuser=True)
    client = Client()
    r = client.post("/admin/login/", {"username": "stella", "password": PASSWORD})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session


def test_replacing_the_authenticator_needs_the_second_factor_first(investigator):
    device = enrol(investigator)
    client = password_login(investigator)
    r = client.get("/accounts/second-factor/setup/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/")
    assert not TOTPDevice.objects.filter(user=investigator, confirmed=False).exists()
    client.post("/accounts/second-factor/", {"code": code(device)})
    assert client.get("/accounts/second-factor/setup/").status_code == 200


def test_a_reader_may_enrol_on_their_own_and_is_then_asked_at_login(reader):
    client = password_login(reader)
    client.get("/accounts/second-factor/setup/")
    device = TOTPDevice.objects.get(user=reader)
    client.post("/accounts/second-factor/setup/", {"code": code(device)})
    again = password_login(reader)
    assert again.get("/").status_code == 302


def test_a_password_alone_cannot_change_the_password(investigator):
    enrol(investigator)
    client = password_login(investigator)
    r = client.post("/accounts/password/change/", {"old_password": PASSWORD, "new_password1": "Another-Long-Pass-77",
                                                   "new_password2": "Another-Long-Pass-77"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/second-factor/")
    investigator.refresh_from_db()
    assert investigator.check_password(PASSWORD)


def test_the_password_change_page_changes_it_and_audits_it(client, investigator):
    client.force_login(investigator)
    r = client.post("/accounts/password/change/", {"old_password": PASSWORD, "new_password1": "Another-Long-Pass-77",
                                                   "new_password2": "Another-Long-Pass-77"})
    assert r.status_code == 302 and r["Location"] == "/accounts/password/change/done/"
    investigator.refresh_from_db()
    assert investigator.check_password("Another-Long-Pass-77")
    event = AuditEvent.objects.get(action="account.password_changed")
    assert event.actor == investigator and "Another" not in str(event.payload)
    assert client.get("/").status_code == 200  # this session stays


def test_a_password_reset_by_email_sets_it_audited_and_still_asks_the_second_factor(investigator, mailoutbox):
    device = enrol(investigator)
    client = Client()
    r = client.post("/accounts/password/reset/", {"email": investigator.email})
    assert r.status_code == 302 and len(mailoutbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mailoutbox[0].body).group(1)
    r = client.get(link, follow=True)
    form_url = r.redirect_chain[-1][0]
    r = client.post(form_url, {"new_password1": "Reset-Long-Password-88", "new_password2": "Reset-Long-Password-88"})
    assert r.status_code == 302 and r["Location"] == "/accounts/password/reset/done/"
    assert AuditEvent.objects.filter(action="account.password_reset", object_id=str(investigator.pk)).exists()
    assert "_auth_user_id" not in client.session  # not logged in by the reset
    r = client.post("/accounts/login/", {"username": "ines", "password": "Reset-Long-Password-88"})
    assert r.status_code == 302 and client.get("/").status_code == 302  # the second factor, as always
    assert client.post("/accounts/second-factor/", {"code": code(device)}).status_code == 302


def test_an_unknown_address_gets_the_same_answer_and_no_mail(db, mailoutbox):
    r = Client().post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert r.status_code == 302 and r["Location"] == "/accounts/password/reset/sent/" and not mailoutbox
