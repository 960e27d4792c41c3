"""API tokens (trial.ApiToken): made by their owner for one trial, stored hashed, expiring, reaching nothing outside
their trial; revocable; audited. DRF's authtoken (plain keys, no expiry, every trial) is gone."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ServiceError
from tests.reading.conftest import build_trial  # noqa: F401  (a trial with readers, cases and reads)
from trial import services
from trial.models import ApiToken, AuditEvent, Role, Trial


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def other(investigator):
    return services.create_trial(by=investigator, code="other", title="Other trial")


def test_drf_authtoken_is_gone():
    assert "rest_framework.authtoken" not in settings.INSTALLED_APPS
    assert "rest_framework.authentication.TokenAuthentication" not in settings.REST_FRAMEWORK[
        "DEFAULT_AUTHENTICATION_CLASSES"]


def test_a_token_is_stored_hashed_and_its_key_shown_once(trial, investigator):
    token, key = services.issue_api_token(trial=trial, by=investigator, name="PACS bridge")
    assert key.startswith("cxr_") and len(key) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert key not in {stored.key_hash, stored.prefix, stored.name} and key.startswith(stored.prefix)
    assert stored.key_hash == ApiToken.hash_key(key)
    assert timedelta(days=29) < stored.expires_at - timezone.now() <= timedelta(days=30)
    event = AuditEvent.objects.get(action="token.created")
    assert event.trial == trial and key not in str(event.payload)


def test_a_token_works_for_its_own_trial(trial, investigator):
    _, key = services.issue_api_token(trial=trial, by=investigator)
    api = bearer(key)
    assert api.get(f"/api/trials/{trial.code}/").status_code == 200
    assert api.post(f"/api/trials/{trial.code}/sites/", {"code": "s1", "name": "S1"}, format="json").status_code == 201
    assert ApiToken.objects.get().last_used_at is not None


def test_a_token_reaches_no_other_trial_even_where_its_owner_has_a_role(trial, other, investigator):
    _, key = services.issue_api_token(trial=trial, by=investigator)
    api = bearer(key)
    for url in [f"/api/trials/{other.code}/", f"/api/trials/{other.code}/members/",
                f"/api/trials/{other.code}/allocations/"]:
        r = api.get(url)
        assert r.status_code == 403 and "does not exist" in r.json()["detail"], url
    r = api.post(f"/api/trials/{other.code}/sites/", {"code": "s1", "name": "S1"}, format="json")
    assert r.status_code == 403 and not other.sites.exists()
    assert [t["code"] for t in api.get("/api/trials/").json()] == [trial.code]  # the list: its own trial only
    r = api.post("/api/trials/", {"code": "new", "title": "New"}, format="json")  # a new trial is no trial's
    assert r.status_code == 403 and not Trial.objects.filter(code="new").exists()


def test_the_scope_holds_inside_the_services_too(trial, other, investigator):
    """The user a token gives carries its trial: trial.access refuses every other trial, whatever calls it."""
    from trial.access import access_for

    investigator.api_token_trial_id = trial.pk
    assert access_for(user=investigator, code=trial.code).trial == trial
    with pytest.raises(PermissionDenied):
        access_for(user=investigator, code=other.code)


def test_a_token_reaches_no_object_of_another_trial(build_trial, investigator):
    """A URL that names an object (a read) and no trial: the object's trial must be the token's."""
    from reading.models import Read

    first, readers, _, _ = build_trial(readers_per_site=2, n_cases=2, code="one")
    second, _, _, _ = build_trial(readers_per_site=2, n_cases=2, code="two")
    own = Read.objects.filter(trial=first, arm="standard").select_related("reader__user").first()
    reader = own.reader.user
    services.add_member(trial=second, by=investigator, user=reader, role=Role.EXPERT)
    _, key = services.issue_api_token(trial=first, by=reader)
    assert bearer(key).get(f"/api/reads/{own.pk}/").status_code == 200
    _, key = services.issue_api_token(trial=second, by=reader)
    r = bearer(key).get(f"/api/reads/{own.pk}/")
    assert r.status_code == 403
    r = bearer(key).put(f"/api/reads/{own.pk}/autosave/", {"findings": "x", "impression": "y", "tab_id": "t"},
                        format="json")
    assert r.status_code == 403


def test_an_expired_or_revoked_token_is_refused(trial, investigator):
    token, key = services.issue_api_token(trial=trial, by=investigator)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = bearer(key).get(f"/api/trials/{trial.code}/")
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    token, key = services.issue_api_token(trial=trial, by=investigator)
    services.revoke_api_token(token=token, by=investigator)
    assert bearer(key).get(f"/api/trials/{trial.code}/").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked", object_id=str(token.pk)).exists()
    assert bearer("cxr_made-up").get(f"/api/trials/{trial.code}/").status_code == 401


def test_a_token_is_made_only_for_oneself_in_a_trial_of_ones_own_and_lives_a_bounded_time(trial, other,
                                                                                           investigator, outsider):
    with pytest.raises(PermissionDenied):
        services.issue_api_token(trial=trial, by=outsider)
    with pytest.raises(ServiceError, match="between 1 and 90 days"):
        services.issue_api_token(trial=trial, by=investigator, days=91)
    with pytest.raises(ServiceError):
        services.issue_api_token(trial=trial, by=investigator, days=0)
    assert not ApiToken.objects.exists()


def test_only_the_owner_or_staff_revoke_a_token(trial, investigator, make_user):
    token, _ = services.issue_api_token(trial=trial, by=investigator)
    with pytest.raises(ServiceError, match="owner or an administrator"):
        services.revoke_api_token(token=token, by=make_user("mallory"))
    services.revoke_api_token(token=token, by=make_user("admin", is_staff=True))
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_the_account_page_makes_a_token_shows_the_key_once_and_revokes_it(client, trial, investigator):
    client.force_login(investigator)
    page = client.get("/accounts/")
    assert page.status_code == 200 and trial.code in page.content.decode()
    r = client.post("/accounts/tokens/", {"trial": trial.code, "name": "Export script", "days": 10})
    key = re.search(r'data-testid="new-token">(cxr_[^<]+)<', r.content.decode()).group(1)
    assert r["Cache-Control"] == "no-store"
    assert bearer(key).get(f"/api/trials/{trial.code}/").status_code == 200
    assert key not in client.get("/accounts/").content.decode()  # never again
    token = ApiToken.objects.get()
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 302
    assert bearer(key).get(f"/api/trials/{trial.code}/").status_code == 401


def test_the_account_page_refuses_a_trial_without_a_role_and_someone_elses_token(client, trial, investigator,
                                                                                 outsider):
    client.force_login(outsider)
    r = client.post("/accounts/tokens/", {"trial": trial.code, "days": 10})
    assert r.status_code == 400 and not ApiToken.objects.exists()
    token, _ = services.issue_api_token(trial=trial, by=investigator)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 403
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


def test_the_schema_describes_the_bearer_token(client, investigator):
    client.force_login(investigator)
    schema = client.get("/api/schema/?format=json").json()
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http", "scheme": "bearer",
        "description": "A token of one trial, made on your account page; it expires."}
