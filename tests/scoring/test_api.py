"""The scoring API: the same permissions and the same blinding as the pages."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from scoring.models import Assignment, Preference, QualityScore
from tests.scoring.helpers import answer_before, mine
from tests.signing import move
from trial import services as trial_services
from trial.models import AuditEvent, Role

# Everything the item payload may carry; a new key must be added here on purpose (and be blind).
ITEM_KEYS = {"key", "kind", "label", "position", "of", "available", "replaced", "replacement_key", "open", "image",
             "images", "clinical_history", "reports", "aligned", "findings", "scale", "answer", "next_key", "urls",
             "next_url"}


def api_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def ready(scoring_trial):
    return scoring_trial(n_cases=2, code="ap")


def test_an_expert_lists_opens_and_answers_items_through_the_api(ready):
    trial, readers, experts, _ = ready
    client = api_for(experts[0])
    listing = client.get(f"/api/trials/{trial.code}/scoring/items/").json()
    assert listing["total"] == listing["count"] == 8 and listing["done"] == 0
    assert set(listing["results"][0]) == {"key", "position", "kind", "label", "done", "available", "api_url"}
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    payload = client.get(f"/api/scoring/items/{quality.key}/").json()
    assert set(payload) == ITEM_KEYS and payload["kind"] == "quality" and len(payload["reports"]) == 1
    assert Assignment.objects.get(pk=quality.pk).opened_at is None  # reading an item changes nothing
    opened = client.post(payload["urls"]["open"])
    assert opened.status_code == 200 and opened.json() == payload
    assert Assignment.objects.get(pk=quality.pk).opened_at is not None
    r = client.post(payload["urls"]["answer"], {"overall": 5, "radpeer": "1", "subscores": {"clarity": 4}},
                    format="json")
    assert r.status_code == 201 and r.json()["answer"]["overall"] == 5
    r = client.post(payload["urls"]["answer"], {"overall": 3, "radpeer": "1"}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "already_answered"
    r = client.post(payload["urls"]["answer"], {"overall": 3, "radpeer": "1", "correction_reason": "Misclicked."},
                    format="json")
    assert r.status_code == 201 and r.json()["answer"]["version"] == 2


def test_the_expert_list_comes_a_page_at_a_time(ready):
    trial, readers, experts, _ = ready
    client = api_for(experts[0])
    everything = client.get(f"/api/trials/{trial.code}/scoring/items/").json()["results"]
    page = client.get(f"/api/trials/{trial.code}/scoring/items/?limit=3&offset=3").json()
    assert page["count"] == page["total"] == 8 and page["done"] == 0
    assert page["results"] == everything[3:6] and page["next"] and page["previous"]


def test_reading_an_item_or_its_page_opens_nothing_and_only_its_expert_opens_it(ready, client):
    trial, readers, experts, _ = ready
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    client.force_login(experts[0])
    for url in (f"/api/scoring/items/{quality.key}/", f"/t/{trial.code}/score/{quality.key}/"):
        assert client.get(url).status_code == 200 and client.head(url).status_code == 200
    assert Assignment.objects.get(pk=quality.pk).opened_at is None
    assert not AuditEvent.objects.filter(action="scoring.item_opened").exists()
    r = api_for(experts[1]).post(f"/api/scoring/items/{quality.key}/open/")
    assert r.status_code == 403 and r.json()["detail"] == "This item is not assigned to you."
    assert api_for(readers[0]).post(f"/api/scoring/items/{quality.key}/open/").status_code == 403
    assert Assignment.objects.get(pk=quality.pk).opened_at is None
    assert api_for(experts[0]).post(f"/api/scoring/items/{quality.key}/open/").status_code == 200
    stamp = Assignment.objects.get(pk=quality.pk).opened_at
    assert stamp is not None
    assert api_for(experts[0]).post(f"/api/scoring/items/{quality.key}/open/").status_code == 200
    assert Assignment.objects.get(pk=quality.pk).opened_at == stamp  # the first time only
    assert AuditEvent.objects.filter(action="scoring.item_opened").count() == 1


def test_an_item_not_yet_available_is_not_opened(ready):
    trial, readers, experts, _ = ready
    pair = mine(experts[0], kind="pair")[0]  # its reports alone come first
    r = api_for(experts[0]).post(f"/api/scoring/items/{pair.key}/open/")
    assert r.status_code == 200 and r.json()["image"] is None
    assert Assignment.objects.get(pk=pair.pk).opened_at is None


def test_api_refusals_are_clear_and_write_nothing(ready):
    trial, readers, experts, _ = ready
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    r = api_for(experts[1]).post(f"/api/scoring/items/{quality.key}/quality/", {"overall": 4, "radpeer": "1"},
                                 format="json")
    assert r.status_code == 403 and r.json()["detail"] == "This item is not assigned to you."
    r = api_for(experts[0]).post(f"/api/scoring/items/{quality.key}/quality/", {"overall": 7, "radpeer": "1"},
                                 format="json")
    assert r.status_code == 400 and r.json() == {"detail": "The overall score must be a whole number from 1 to 5.",
                                                 "code": "invalid", "field": "overall"}
    r = api_for(experts[0]).post(f"/api/scoring/items/{quality.key}/pair/", {"choice": "A"}, format="json")
    assert r.status_code == 400 and "asks for a report quality" in r.json()["detail"]
    r = api_for(readers[0]).get(f"/api/scoring/items/{quality.key}/")
    assert r.status_code == 403
    assert not QualityScore.objects.exists() and not Preference.objects.exists()


def test_the_item_payload_names_no_arm_reader_draft_site_or_date(ready):
    trial, readers, experts, cases = ready
    client = api_for(experts[2])
    pair = mine(experts[2], kind="pair")[0]
    answer_before(pair, experts[2])
    body = json.dumps(client.get(f"/api/scoring/items/{pair.key}/").json())
    for secret in ["assisted", "standard", "site-a", cases[0].code, str(cases[0].enrolled_at.date()), "AI draft",
                   *[u.username for u in readers], *[u.username for u in experts if u != experts[2]]]:
        assert secret not in body, secret
    payload = json.loads(body)
    assert [r["side"] for r in payload["reports"]] == ["A", "B"]


def test_investigators_see_completion_only_and_results_after_unblinding(ready, investigator, make_user):
    trial, readers, experts, _ = ready
    answer_before(mine(experts[0], kind="pair")[0], experts[0])
    client = api_for(investigator)
    progress = client.get(f"/api/trials/{trial.code}/scoring/progress/").json()
    e01 = next(e for e in progress["experts"] if e["username"] == experts[0].username)
    assert e01["done"] == 3 and e01["assigned"] == 8
    assert "overall" not in json.dumps(progress) and "radpeer" not in json.dumps(progress)
    r = client.get(f"/api/trials/{trial.code}/scoring/results/")
    assert r.status_code == 403 and "after unblinding" in r.json()["detail"]
    statistician = make_user("stat-ap")
    trial_services.add_member(trial=trial, by=investigator, user=statistician, role=Role.STATISTICIAN)
    assert api_for(statistician).get(f"/api/trials/{trial.code}/scoring/results/").status_code == 403
    for status in ("locked", "unblinded"):
        trial = move(trial, by=investigator, to=status, statistician=statistician)
    rows = client.get(f"/api/trials/{trial.code}/scoring/results/").json()
    assert len(rows["quality"]) == 2 and rows["quality"][0]["arm"] in ("assisted", "standard")
    assert api_for(statistician).get(f"/api/trials/{trial.code}/scoring/results/").status_code == 200
    assert api_for(experts[0]).get(f"/api/trials/{trial.code}/scoring/results/").status_code == 403


def test_investigator_builds_and_sets_the_adjudicator_through_the_api(ready, investigator):
    trial, readers, experts, _ = ready
    client = api_for(investigator)
    r = client.post(f"/api/trials/{trial.code}/scoring/build/")
    assert r.status_code == 200 and r.json()["created"] == {}
    r = client.put(f"/api/trials/{trial.code}/scoring/settings/", {"adjudicator": "E03"}, format="json")
    assert r.status_code == 200 and r.json()["adjudicator"] == "E03"
    r = client.put(f"/api/trials/{trial.code}/scoring/settings/", {"subscores": []}, format="json")
    assert r.status_code == 409 and "frozen once scoring items exist" in r.json()["detail"]
    assert api_for(experts[0]).post(f"/api/trials/{trial.code}/scoring/build/").status_code == 403
