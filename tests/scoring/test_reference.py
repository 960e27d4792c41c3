"""The reference standard: the panel's majority per case and finding; disputes go to the adjudicator."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from core.errors import ServiceError
from scoring import selectors, services
from scoring.models import Adjudication, ReferenceStandard
from tests.scoring.helpers import answer, mine
from trial.access import access_to
from trial.models import Role


@pytest.fixture
def panel(scoring_trial, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, n_experts=6, code="rf")
    adjudicator = trial.memberships.get(user=experts[5], role=Role.EXPERT)
    services.update_settings(trial=trial, by=investigator, adjudicator=adjudicator)
    voters = [u for u in experts if mine(u, kind="reference")]
    return trial, voters, experts[5]


def _vote(trial, user, **overrides):
    marks = {f: "absent" for f in trial.findings} | overrides
    return answer(mine(user, kind="reference")[0], user, marks=marks)


def test_the_majority_of_the_whole_panel_decides_once_every_expert_has_marked(panel):
    trial, voters, _ = panel
    for i, user in enumerate(voters[:4]):
        _vote(trial, user, **{"pleural effusion": "present" if i < 3 else "absent"})
    assert not ReferenceStandard.objects.exists()  # four of five: not decided yet
    _vote(trial, voters[4], **{"pleural effusion": "uncertain"})
    effusion = ReferenceStandard.objects.get(finding="pleural effusion")
    votes = (effusion.votes_present, effusion.votes_absent, effusion.votes_uncertain)
    assert (effusion.present, effusion.method, votes) == (True, "majority", (3, 1, 1))
    assert ReferenceStandard.objects.get(finding="pneumothorax").present is False


def test_no_majority_goes_to_the_adjudicator_who_decides_without_seeing_the_votes(panel):
    trial, voters, adjudicator = panel
    for mark, user in zip(["present", "present", "absent", "absent", "uncertain"], voters):
        _vote(trial, user, pneumothorax=mark)
    pending = ReferenceStandard.objects.get(finding="pneumothorax")
    assert pending.method == "pending" and pending.present is None
    queue = selectors.adjudication_queue(access=access_to(user=adjudicator, trial=trial))
    assert [row["pending"] for row in queue] == [["pneumothorax"]]
    item = selectors.adjudication_item(access=access_to(user=adjudicator, trial=trial), key=queue[0]["key"])
    view = selectors.adjudication_view(item=item)
    assert view["findings"] == [{"finding": "pneumothorax", "pending": True, "decision": None}]
    assert "votes" not in str(view) and item.case.code not in str(view)
    services.adjudicate(item=item, by=adjudicator, decisions={"pneumothorax": True}, reason="Apical line.")
    decided = ReferenceStandard.objects.get(finding="pneumothorax")
    assert (decided.present, decided.method, decided.decided_by.user) == (True, "adjudicated", adjudicator)
    assert Adjudication.objects.get().adjudicator.user == adjudicator


def test_only_the_adjudicator_settles_and_only_disputed_findings(panel):
    trial, voters, adjudicator = panel
    for mark, user in zip(["present", "present", "absent", "absent", "uncertain"], voters):
        _vote(trial, user, pneumothorax=mark)
    with pytest.raises(PermissionDenied, match="Only the trial's adjudicator"):
        selectors.adjudication_queue(access=access_to(user=voters[0], trial=trial))
    access = access_to(user=adjudicator, trial=trial)
    item = selectors.adjudication_item(access=access, key=selectors.adjudication_queue(access=access)[0]["key"])
    with pytest.raises(services.NotAssigned, match="Only the trial's adjudicator"):
        services.adjudicate(item=item, by=voters[0], decisions={"pneumothorax": True})
    with pytest.raises(ServiceError, match="Not awaiting adjudication on this case: cardiomegaly"):
        services.adjudicate(item=item, by=adjudicator, decisions={"cardiomegaly": True})
    assert not Adjudication.objects.exists()


def test_a_corrected_vote_decides_again(panel):
    trial, voters, _ = panel
    for mark, user in zip(["present", "present", "absent", "absent", "uncertain"], voters):
        _vote(trial, user, pneumothorax=mark)
    assignment = mine(voters[4], kind="reference")[0]
    answer(assignment, voters[4], marks={f: "absent" for f in trial.findings} | {"pneumothorax": "present"},
           reason="Saw the pleural line.")
    decided = ReferenceStandard.objects.get(finding="pneumothorax")
    assert (decided.present, decided.method, decided.votes_present) == (True, "majority", 3)


def test_the_adjudication_queue_comes_a_page_at_a_time_through_the_api(panel):
    from rest_framework.test import APIClient

    trial, voters, adjudicator = panel
    for mark, user in zip(["present", "present", "absent", "absent", "uncertain"], voters):
        _vote(trial, user, pneumothorax=mark)
    client = APIClient()
    client.force_authenticate(adjudicator)
    queue = client.get(f"/api/trials/{trial.code}/scoring/adjudication/").json()
    assert queue["count"] == 1 and queue["next"] is None
    [row] = queue["results"]
    assert set(row) == {"key", "number", "pending", "adjudicated", "api_url"} and row["pending"] == ["pneumothorax"]
    view = client.get(row["api_url"]).json()
    assert view["findings"] == [{"finding": "pneumothorax", "pending": True, "decision": None}]
    client.force_authenticate(voters[0])
    r = client.get(f"/api/trials/{trial.code}/scoring/adjudication/")
    assert r.status_code == 403 and "Only the trial's adjudicator" in r.json()["detail"]
