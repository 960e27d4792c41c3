"""An expert, in a real browser: scores one report alone, then the pair of the same case, blinded."""
from __future__ import annotations

import pytest

from scoring import services
from scoring.models import Assignment, Preference, QualityScore
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login
from tests.reading.conftest import build_trial  # noqa: F401  (fixture)
from tests.scoring.conftest import add_experts, submit_all_reads
from tests.scoring.helpers import answer, mine
from trial import services as trial_services


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_expert_scores_a_report_and_a_pair_in_the_browser(page, build_trial, investigator, make_user):  # noqa: F811
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=2, code="ex")
    experts = add_experts(trial, investigator, make_user, 5)
    # Report quality and the comparison only (no findings round), to keep the walk short.
    services.update_settings(trial=trial, by=investigator, reference_standard=False)
    submit_all_reads(trial)
    trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    services.build_items(trial=trial, by=investigator)  # also run by the status-change task; idempotent
    expert = experts[0]
    case = cases[0]
    first, second = mine(expert, kind="quality", case=case)
    answer(first, expert)  # the other report of the case was scored earlier
    pair = mine(expert, kind="pair", case=case)[0]

    login(page, expert.username, PASSWORD)
    page.goto(f"/t/{trial.code}/")
    page.get_by_role("link", name="My scoring list").click()
    page.wait_for_selector("[data-testid=progress]:has-text('1 of 6 done')")
    page.locator(f"a.stretched-link[href$='/score/{second.key}/']").click()
    page.wait_for_selector("#viewer[data-shown=true]")  # the radiograph is on screen
    body = page.inner_text("body")
    for blinded in ("assisted", "standard", case.code, "site-a", "AI draft", *[u.username for u in readers]):
        assert blinded not in body
    page.check("input[name=overall][value='4']")
    page.select_option("select[name=sub_accuracy]", "5")
    page.check("input[name=radpeer][value='2a']")
    page.fill("textarea[name=comment]", "Effusion size not given.")
    page.click("[data-testid=submit]")
    page.wait_for_selector("text=Saved.")
    score = QualityScore.objects.get(assignment=second)
    assert (score.overall, score.radpeer, score.subscores, score.comment) == (4, "2a", {"accuracy": 5},
                                                                              "Effusion size not given.")
    assert score.opened_at is not None and score.submitted_at > score.opened_at

    page.goto(f"/t/{trial.code}/score/")
    page.locator(f"a.stretched-link[href$='/score/{pair.key}/']").click()
    page.wait_for_selector("#viewer[data-shown=true]")
    assert page.locator("[data-testid=report-A]").count() == 1 and page.locator("[data-testid=report-B]").count() == 1
    page.check("input[name=choice][value='B']")
    page.fill("textarea[name=reason]", "More precise.")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "expert-pair.png"), full_page=True)
    page.click("[data-testid=submit]")
    page.wait_for_selector("text=Saved.")
    preference = Preference.objects.get(assignment=pair)
    assert preference.choice == "B" and preference.reason == "More precise."
    assisted_side = Assignment.objects.get(pk=pair.pk).assisted_side
    assert assisted_side in ("A", "B")  # stored with the answer's assignment: the analysis recovers the arm


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_expert_marks_the_findings_of_a_radiograph_for_the_reference_standard(page, build_trial, investigator,  # noqa: F811
                                                                              make_user):
    from scoring.models import FindingVote

    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=1, code="rf")
    experts = add_experts(trial, investigator, make_user, 5)
    submit_all_reads(trial)
    trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    services.build_items(trial=trial, by=investigator)
    expert = experts[0]
    item = mine(expert, kind="reference", case=cases[0])[0]  # the image alone comes first

    login(page, expert.username, PASSWORD)
    page.goto(f"/t/{trial.code}/score/")
    page.locator(f"a.stretched-link[href$='/score/{item.key}/']").click()
    page.wait_for_selector("#viewer[data-shown=true]")
    body = page.inner_text("body")
    assert "FINDINGS" not in body and cases[0].code not in body  # the image alone, blinded
    for i, finding in enumerate(trial.findings):
        page.check(f"input[name=finding_{i}][value='{'present' if finding == 'pleural effusion' else 'absent'}']")
    page.click("[data-testid=submit]")
    page.wait_for_selector("text=Saved.")
    vote = FindingVote.objects.get(assignment=item)
    assert vote.marks["pleural effusion"] == "present" and vote.marks["pneumothorax"] == "absent"
