"""The experts' optional question on a pair, "Which report was written with AI assistance?" (A, B or can't tell):
a trial setting, stored with the preference, refused where not asked, required where asked, through the service, the
page and the API, and named by real arm in the analysis rows (for Bang's blinding index)."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.errors import ServiceError
from scoring import selectors, services
from scoring.models import Preference
from tests.scoring.helpers import answer, answer_before, mine
from tests.scoring.test_blinding_crawl import _forbidden, _leaks
from trial import services as trial_services
from trial.models import AuditEvent


@pytest.fixture
def asking(scoring_trial, investigator, django_capture_on_commit_callbacks):
    """A trial that asks the question, in the canonical presentation with the aligned display (set before items)."""
    trial, readers, experts, cases = scoring_trial(n_cases=2, move=False, code="aq")
    services.update_settings(trial=trial, by=investigator, ask_which_assisted=True, canonical_text=True,
                             aligned_pair=True)
    with django_capture_on_commit_callbacks(execute=True):
        trial = trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    trial.refresh_from_db()
    return trial, readers, experts, cases


def _row(trial, assignment):
    return next(r for r in selectors.analysis_rows(trial)["preference"]
                if r["item"] == assignment.item_id and r["expert"] == assignment.expert.pseudonym)


def _audit_count():
    return AuditEvent.objects.filter(action__startswith="scoring.pair").count()


def test_the_answer_is_stored_with_the_preference_and_named_by_real_arm_in_the_analysis_rows(asking):
    trial, readers, experts, cases = asking
    named = {}
    for user, guess in zip(experts[:3], ("A", "B", "unsure"), strict=True):
        pair = mine(user, kind="pair")[0]
        answer_before(pair, user)
        preference = services.submit_preference(assignment=pair, by=user, choice="A", ai_guess=guess)
        assert Preference.objects.get(pk=preference.pk).ai_guess == guess
        named[guess] = pair
    for guess, pair in named.items():
        row = _row(trial, pair)
        left, right = row["left_arm"], ("standard" if row["left_arm"] == "assisted" else "assisted")
        assert row["ai_guess"] == guess
        assert row["guess_arm"] == {"A": left, "B": right, "unsure": None}[guess]
    assert selectors.item_view(assignment=named["A"])["answer"]["ai_guess"] == "A"


def test_a_correction_carries_its_own_answer_and_the_rows_take_the_latest(asking):
    trial, readers, experts, cases = asking
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    services.submit_preference(assignment=pair, by=experts[0], choice="A", ai_guess="unsure")
    services.submit_preference(assignment=pair, by=experts[0], choice="A", ai_guess="B", reason="Second look.")
    assert list(Preference.objects.filter(assignment=pair).values_list("version", "ai_guess")) == [(1, "unsure"),
                                                                                                    (2, "B")]
    assert _row(trial, pair)["ai_guess"] == "B"


def test_without_the_question_the_rows_say_not_asked(scoring_trial):
    trial, readers, experts, cases = scoring_trial(n_cases=1, code="nq")
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    answer(pair, experts[0], choice="B")
    row = _row(trial, pair)
    assert row["ai_guess"] == "" and row["guess_arm"] is None
    assert selectors.item_view(assignment=pair)["scale"]["ai_guess"] == []


def test_an_answer_is_refused_where_the_trial_does_not_ask_and_nothing_is_written(scoring_trial):
    trial, readers, experts, cases = scoring_trial(n_cases=1, code="nr")
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    before = _audit_count()
    with pytest.raises(ServiceError, match="does not ask which report was written with AI assistance") as refused:
        services.submit_preference(assignment=pair, by=experts[0], choice="A", ai_guess="A")
    assert refused.value.field == "ai_guess"
    assert not Preference.objects.exists() and _audit_count() == before


@pytest.mark.parametrize("guess", ["", "X", "none"])
def test_where_the_trial_asks_an_answer_is_required_and_nothing_is_written_without_it(asking, guess):
    trial, readers, experts, cases = asking
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    before = _audit_count()
    with pytest.raises(ServiceError, match="report A, report B or can't tell"):
        services.submit_preference(assignment=pair, by=experts[0], choice="A", ai_guess=guess)
    assert not Preference.objects.exists() and _audit_count() == before


def test_the_api_declares_the_answers_and_takes_them(asking):
    trial, readers, experts, cases = asking
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    client = APIClient()
    client.force_login(experts[0])
    item = client.get(f"/api/scoring/items/{pair.key}/").json()
    assert item["scale"]["ai_guess"] == [{"value": "A", "label": "Report A"}, {"value": "B", "label": "Report B"},
                                         {"value": "unsure", "label": "Can't tell"}]
    assert item["aligned"] is True
    r = client.post(item["urls"]["answer"], {"choice": "A"}, format="json")
    assert r.status_code == 400 and "can't tell" in r.json()["detail"] and not Preference.objects.exists()
    r = client.post(item["urls"]["answer"], {"choice": "A", "ai_guess": "maybe"}, format="json")
    assert r.status_code == 400 and not Preference.objects.exists()
    r = client.post(item["urls"]["answer"], {"choice": "A", "ai_guess": "unsure"}, format="json")
    assert r.status_code == 201 and r.json()["answer"]["ai_guess"] == "unsure"


def test_the_api_refuses_the_answer_where_the_trial_does_not_ask(scoring_trial):
    trial, readers, experts, cases = scoring_trial(n_cases=1, code="na")
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    client = APIClient()
    client.force_login(experts[0])
    r = client.post(f"/api/scoring/items/{pair.key}/pair/", {"choice": "A", "ai_guess": "A"}, format="json")
    assert r.status_code == 400 and "does not ask" in r.json()["detail"] and not Preference.objects.exists()


def test_the_page_asks_after_the_preference_and_stores_the_answer(asking):
    trial, readers, experts, cases = asking
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    client = Client()
    client.force_login(experts[0])
    url = f"/t/{trial.code}/score/{pair.key}/"
    page = client.get(url).content.decode()
    question = page.index("Which report was written with AI assistance?")
    assert page.index("Which report is better?") < question
    refused = client.post(url, {"action": "submit", "choice": "B"})
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()
    assert not Preference.objects.exists()
    client.post(url, {"action": "submit", "choice": "B", "ai_guess": "A"})
    assert Preference.objects.get(assignment=pair).ai_guess == "A"
    assert "Written with AI assistance: report A" in client.get(url).content.decode()


def test_the_settings_api_sets_the_question_and_the_presentation_before_items(scoring_trial, investigator):
    trial, *_ = scoring_trial(n_cases=1, move=False, code="sa")
    client = APIClient()
    client.force_login(investigator)
    url = f"/api/trials/{trial.code}/scoring/settings/"
    r = client.put(url, {"ask_which_assisted": True, "canonical_text": True, "aligned_pair": True}, format="json")
    assert r.status_code == 200
    assert {k: r.json()[k] for k in ("ask_which_assisted", "canonical_text", "aligned_pair")} == {
        "ask_which_assisted": True, "canonical_text": True, "aligned_pair": True}
    services.build_items(trial=trial, by=investigator)
    r = client.put(url, {"ask_which_assisted": False}, format="json")
    assert r.status_code == 409 and "frozen once scoring items exist" in r.json()["detail"]
    assert selectors.settings_of(trial).ask_which_assisted is True


def test_the_question_the_canonical_text_and_the_aligned_display_leak_nothing_to_experts(asking):
    trial, readers, experts, cases = asking
    expert = experts[0]
    pair = mine(expert, kind="pair")[0]
    answer_before(pair, expert)
    answer(pair, expert, choice="A", ai_guess="B")
    world = {"users": {"expert": expert}, "trial": trial, "cases": cases, "model": trial.ai_model.model_version}
    forbidden = _forbidden(world, "expert")
    page, api = Client(), APIClient()
    page.force_login(expert)
    api.force_login(expert)
    found = []
    for assignment in mine(expert, trial=trial):
        for client, url in ((page, f"/t/{trial.code}/score/{assignment.key}/"),
                            (api, f"/api/scoring/items/{assignment.key}/")):
            response = client.get(url)
            assert response.status_code == 200
            found += [f"{url}: {label}" for label in _leaks(response, forbidden)]
    assert not found, "\n".join(found)
