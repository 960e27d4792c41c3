"""The senior's sign-off is an electronic signature (issue 13 item 7): password and second factor at the first
signing of a session, the password alone at later ones of the same continuous session, bound to the version's
content; a refused signature signs nothing."""
from __future__ import annotations

import pytest
from django_otp.plugins.otp_static.models import StaticDevice
from rest_framework.test import APIClient

from reading.models import Read, Report
from reading.services import report_content_sha256
from tests.reading.test_reading import _submit
from tests.signing import credentials
from trial import services as trial_services
from trial.models import Signature

pytestmark = pytest.mark.django_db


@pytest.fixture
def to_sign(build_trial, investigator, make_user):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    senior = make_user("sam-senior")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role="senior")
    reports = [_submit(r, r.reader.user) for r in Read.objects.filter(trial=trial).select_related("reader__user")]
    return trial, senior, reports


def test_the_first_signing_needs_both_components_later_ones_the_password(client, to_sign):
    trial, senior, reports = to_sign
    client.force_login(senior)
    first, second, third = reports[:3]
    url = f"/t/{trial.code}/signoff/{first.pk}/"
    page = client.get(url).content.decode()
    assert Signature.Meaning.SIGN_OFF.label in page and 'name="code"' in page
    good = credentials(senior)
    r = client.post(url, {"action": "sign", "password": good.password, "code": "000000"})
    assert r.status_code == 200 and "not right" in r.content.decode()
    r = client.post(url, {"action": "sign", "password": good.password})  # no code at a first signing: refused
    assert r.status_code == 200 and Report.objects.get(pk=first.pk).signed_at is None
    r = client.post(url, {"action": "sign", "password": good.password, "code": good.code})
    assert r.status_code == 200 and "Try again in" in r.content.decode()  # the wrong code's throttle holds
    StaticDevice.objects.filter(user=senior).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    r = client.post(url, {"action": "sign", "password": good.password, "code": good.code})
    assert r.status_code == 302 and Report.objects.get(pk=first.pk).signed_by == senior
    signature = Signature.objects.get(meaning="sign_off", object_id=str(first.pk))
    assert signature.content_hash == report_content_sha256(Report.objects.get(pk=first.pk))
    assert signature.method == "password+second factor"
    # the same continuous session: the page asks for the password only, and a wrong one still refuses
    url2 = f"/t/{trial.code}/signoff/{second.pk}/"
    assert 'name="code"' not in client.get(url2).content.decode()
    assert client.post(url2, {"action": "sign", "password": "wrong"}).status_code == 200
    assert Report.objects.get(pk=second.pk).signed_at is None
    r = client.post(url2, {"action": "edit", "password": good.password, "findings": "", "impression": "Edited.",
                           "reason": "Clearer"})
    assert r.status_code == 302
    edited = Report.objects.get(read_id=second.read_id, version=2)
    later = Signature.objects.get(meaning="sign_off", object_id=str(edited.pk))
    assert later.method.startswith("password (a later signing") and later.content_hash == report_content_sha256(edited)
    # a new session starts again with both components
    client.logout()
    client.force_login(senior)
    assert 'name="code"' in client.get(f"/t/{trial.code}/signoff/{third.pk}/").content.decode()


def test_the_api_needs_both_components_on_every_call(to_sign):
    trial, senior, reports = to_sign
    api = APIClient()
    api.force_authenticate(senior)
    url = f"/api/trials/{trial.code}/signoff/{reports[0].pk}/sign/"
    assert api.post(url, {}, format="json").status_code == 400
    assert api.post(url, {"password": credentials(senior).password}, format="json").status_code == 403
    assert Report.objects.get(pk=reports[0].pk).signed_at is None
    r = api.post(url, vars(credentials(senior)), format="json")
    assert r.status_code == 200 and r.json()["signed_at"]
