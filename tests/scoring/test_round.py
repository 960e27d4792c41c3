"""A full scoring round, in the test suite: every expert answers every item, through the pages; the
stored data is then exactly what the statistics need (scoring.selectors.analysis_rows)."""
from __future__ import annotations

import re

from django.urls import reverse

from scoring import selectors
from scoring.models import Assignment, FindingVote, Preference, QualityScore, default_subscores
from trial.access import access_to
from trial.models import Membership


def _post_answer(client, trial, row, findings, i):
    url = reverse("scoring:item", args=[trial.code, row.key])
    page = client.get(url)
    assert page.status_code == 200
    # What the page's script does as it runs: open the item (its time starts), by the URL the page names.
    open_url = re.search(r'data-open-url="([^"]+)"', page.content.decode())[1]
    assert client.post(open_url).status_code == 200
    if row.kind == "quality":
        data = {"action": "submit", "overall": str(1 + i % 5), "radpeer": "2a", "sub_accuracy": "4", "comment": ""}
    elif row.kind == "pair":
        data = {"action": "submit", "choice": "AB"[i % 2], "reason": ""}
    else:
        data = {"action": "submit", **{f"finding_{j}": "present" if j == 0 else "absent" for j in range(len(findings))}}
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]


def test_a_full_round_through_the_pages_gives_the_analysis_data_set(scoring_trial, client):
    trial, readers, experts, cases = scoring_trial(n_cases=3, code="fr")
    for user in experts:
        client.force_login(user)
        for i in range(100):
            wl = selectors.worklist(access=access_to(user=user, trial=trial))
            if wl.resume is None:
                break
            _post_answer(client, trial, wl.resume, trial.findings, i)
        assert selectors.worklist(access=access_to(user=user, trial=trial)).done == 12
    assert QualityScore.objects.count() == 6 * 5 and Preference.objects.count() == 3 * 5
    assert FindingVote.objects.count() == 3 * 5
    rows = selectors.analysis_rows(trial)
    # per report and expert
    assert len(rows["quality"]) == 30
    q = rows["quality"][0]
    for key in ("case", "site", "arm", "reader", "expert", "overall", "radpeer", "sub_accuracy", "opened_at",
                "submitted_at", "seconds", "report", "report_version", "version"):
        assert key in q, key
    assert {r["arm"] for r in rows["quality"]} == {"assisted", "standard"}
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in rows["quality"])
    readers_by_pseudonym = set(Membership.objects.filter(trial=trial, role="reader")
                               .values_list("pseudonym", flat=True))
    assert {r["reader"] for r in rows["quality"]} <= readers_by_pseudonym
    # per pair and expert, with sides
    assert len(rows["preference"]) == 15
    for r in rows["preference"]:
        assignment = Assignment.objects.get(item_id=r["item"], expert__pseudonym=r["expert"])
        assert r["assisted_side"] == assignment.assisted_side
        assert r["preferred_arm"] == (r["left_arm"] if r["choice"] == "A" else
                                      {"assisted": "standard", "standard": "assisted"}[r["left_arm"]])
    # the reference standard: all five said "present" for the first finding
    assert len(rows["finding_votes"]) == 3 * 5 * len(trial.findings)
    first = [r for r in rows["reference_standard"] if r["finding"] == trial.findings[0]]
    assert len(first) == 3 and all(r["present"] is True and r["method"] == "majority" for r in first)


def test_pages_refuse_what_is_not_yours_and_show_clear_errors(scoring_trial, client):
    trial, readers, experts, cases = scoring_trial(n_cases=1, code="pg")
    theirs = Assignment.objects.filter(expert__user=experts[1]).first()
    client.force_login(experts[0])
    assert client.get(reverse("scoring:item", args=[trial.code, theirs.key])).status_code == 403
    assert client.get(reverse("scoring:item_image", args=[trial.code, theirs.key, "display"])).status_code == 403
    row = selectors.worklist(access=access_to(user=experts[0], trial=trial)).resume
    url = reverse("scoring:item", args=[trial.code, row.key])
    response = client.post(url, {"action": "submit", "finding_0": "present"})  # the other findings missing
    assert response.status_code == 200 and not FindingVote.objects.exists()
    assert "This field is required." in response.content.decode()
    page = client.get(url).content.decode()
    assert re.search(r'id="viewer"', page) and "item-image" in page and "<script>" not in page.replace(" ", "")


def test_investigator_pages_show_completion_and_build(scoring_trial, client, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, code="ip")
    client.force_login(investigator)
    page = client.get(reverse("scoring:progress", args=[trial.code])).content.decode()
    assert experts[0].username in page and "Build items now" in page
    response = client.post(reverse("scoring:build", args=[trial.code]), follow=True)
    assert "0 items built." in response.content.decode()
    response = client.post(reverse("scoring:settings", args=[trial.code]), {
        "adjudicator": Membership.objects.get(user=experts[2], role="expert").pk, "reference_standard": "on",
        "subscores": "\n".join(f"{s['key']} | {s['label']} | {s['help']}" for s in default_subscores())}, follow=True)
    assert "Scoring settings saved." in response.content.decode()
    assert selectors.settings_of(trial).adjudicator.user == experts[2]
    response = client.post(reverse("scoring:settings", args=[trial.code]), {"subscores": "style | Style |"})
    assert "frozen once scoring items exist" in response.content.decode()
    client.force_login(experts[0])
    assert client.get(reverse("scoring:progress", args=[trial.code])).status_code == 403
