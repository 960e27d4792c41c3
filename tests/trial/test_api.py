"""The REST API: token auth (a token of one trial), role checks, clear errors, the OpenAPI schema."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from trial import services
from trial.models import Site, Trial


def token_client(user, trial) -> APIClient:
    client = APIClient()
    _, key = services.issue_api_token(trial=trial, by=user, name="tests")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def api(investigator, trial):
    """The investigator's token for the trial `jpc-1`."""
    return token_client(investigator, trial)


@pytest.fixture
def session_api(investigator):
    client = APIClient()
    client.force_login(investigator)
    return client


@pytest.fixture
def outsider_api(outsider, investigator):
    """An outsider's token, for a trial of their own (they hold no role in `jpc-1`)."""
    theirs = services.create_trial(by=investigator, code="theirs", title="Theirs")
    services.add_member(trial=theirs, by=investigator, user=outsider, role="expert")
    return token_client(outsider, theirs)


def test_anonymous_requests_are_refused(db):
    assert APIClient().get("/api/trials/").status_code == 401


def test_create_trial_and_site_through_the_api(session_api):
    api = session_api
    r = api.post("/api/trials/", {"code": "api-1", "title": "API trial", "registration_id": "NCT1",
                                  "findings": ["pneumothorax", "pleural effusion"]}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["findings"] == ["pneumothorax", "pleural effusion"]
    r = api.post("/api/trials/api-1/sites/", {"code": "s1", "name": "Site 1"}, format="json")
    assert r.status_code == 201
    assert [s["code"] for s in api.get("/api/trials/api-1/sites/").json()] == ["s1"]


def test_duplicate_trial_code_gives_409_with_the_reason(session_api, trial):
    api = session_api
    r = api.post("/api/trials/", {"code": trial.code, "title": "Again"}, format="json")
    assert r.status_code == 409
    assert r.json() == {"detail": "The trial code “jpc-1” is already used; choose another.",
                        "code": "duplicate_code", "field": "code"}
    assert Trial.objects.count() == 1


def test_illegal_transition_gives_409(api, trial):
    r = api.post(f"/api/trials/{trial.code}/transition/", {"to": "locked"}, format="json")
    assert r.status_code == 409 and "cannot move to" in r.json()["detail"]
    trial.refresh_from_db()
    assert trial.status == "setup"


def test_outsider_gets_403_and_learns_nothing(outsider_api, trial):
    urls = [f"/api/trials/{trial.code}/", f"/api/trials/{trial.code}/sites/", f"/api/trials/{trial.code}/members/",
            f"/api/trials/{trial.code}/cases/", f"/api/trials/{trial.code}/allocations/"]
    for url in urls:
        r = outsider_api.get(url)
        assert r.status_code == 403, url
        assert trial.title not in r.content.decode()
    missing = outsider_api.get("/api/trials/does-not-exist/")
    assert missing.status_code == 403 and missing.json() == outsider_api.get(urls[0]).json()
    r = outsider_api.post(f"/api/trials/{trial.code}/sites/", {"code": "x", "name": "X"}, format="json")
    assert r.status_code == 403
    assert not Site.objects.filter(code="x").exists()


def test_outsider_does_not_see_the_trial_in_lists(outsider_api, trial):
    assert [t["code"] for t in outsider_api.get("/api/trials/").json()] == ["theirs"]


def test_invite_known_user_adds_member_at_once(api, trial, make_user):
    make_user("ed")
    r = api.post(f"/api/trials/{trial.code}/members/", {"email": "ed@example.org", "role": "expert"}, format="json")
    assert r.status_code == 201 and r.json()["pseudonym"] == "E01"
    r = api.post(f"/api/trials/{trial.code}/members/", {"email": "new@example.org", "role": "statistician"},
                 format="json")
    assert r.status_code == 202 and r.json()["invited"] is True


def test_schema_and_docs_are_served_without_a_cdn(client, investigator):
    client.force_login(investigator)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/trials/{code}/cases/" in schema.content
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn" not in docs.lower() and "unpkg" not in docs and "jsdelivr" not in docs


def test_lists_that_grow_with_the_trial_come_a_page_at_a_time(api, enrolling_trial, site, investigator, make_user):
    from tests import dicom_corpus as corpus
    from trial import services

    for i in range(3):
        services.add_member(trial=enrolling_trial, by=investigator, user=make_user(f"reader-{i}"), role="reader",
                            site=site)
        services.enrol_case(trial=enrolling_trial, site=site, by=investigator,
                            data=corpus.radiograph_bytes(seed=40 + i))
    base = f"/api/trials/{enrolling_trial.code}"
    members = api.get(f"{base}/members/?limit=2").json()
    assert members["count"] == 4 and len(members["results"]) == 2 and members["next"] and members["previous"] is None
    rest = api.get(members["next"]).json()
    assert [m["pseudonym"] for m in members["results"] + rest["results"]] == ["I01", "R01", "R02", "R03"]
    cases = api.get(f"{base}/cases/?limit=2&offset=2").json()
    assert cases["count"] == 3 and [c["code"] for c in cases["results"]] == ["C0003"]
    hidden = api.get(f"{base}/allocations/")  # while enrolment is open, nobody may count the arms
    assert hidden.status_code == 403 and "hidden while enrolment is open" in hidden.json()["detail"]
    Trial.objects.filter(pk=enrolling_trial.pk).update(status="reading")
    allocations = api.get(f"{base}/allocations/").json()
    assert allocations["count"] == 3 and {a["unit"] for a in allocations["results"]} == {"R01", "R02", "R03"}
    assert set(allocations["results"][0]) == {"stratum", "position", "unit_type", "unit", "arm", "allocated_at"}


def test_an_invitation_answers_with_its_declared_shape(api, trial):
    r = api.post(f"/api/trials/{trial.code}/members/", {"email": "New@Example.org", "role": "statistician"},
                 format="json")
    assert r.status_code == 202
    assert r.json() == {"email": "new@example.org", "role": "statistician", "site": None, "invited": True}
