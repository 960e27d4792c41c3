"""A statistician, in a real browser: writes and freezes the analysis plan, runs the analysis, reads the report
(arms masked), downloads the report file and the dataset zip."""
from __future__ import annotations

import io
import zipfile

import pytest

from stats.models import AnalysisPlan, AnalysisRun
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login, next_code
from tests.stats.test_runs_fixtures import arm_words, build_trial, complete_trial  # noqa: F401  (fixtures)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_statistician_freezes_the_plan_runs_the_analysis_and_downloads_everything(page, complete_trial, tmp_path):
    sim = complete_trial(code="e2e-stats")
    login(page, sim.statistician.username, PASSWORD)
    page.goto(f"/t/{sim.trial.code}/analysis/")
    page.get_by_role("link", name="Write the analysis plan").click()
    page.wait_for_url("**/analysis/plan/")
    page.click("[data-testid=save-plan]")
    page.wait_for_selector("[data-testid=plan-state]:has-text('draft')")
    # freezing is signed: the password and a code of the authenticator again
    page.fill("[data-testid=freeze-form] input[name=password]", PASSWORD)
    page.fill("[data-testid=freeze-form] input[name=code]", next_code(sim.statistician.username))
    page.click("[data-testid=freeze-plan]")
    page.wait_for_selector("[data-testid=plan-state]:has-text('frozen')")
    plan = AnalysisPlan.objects.get(trial=sim.trial)
    assert page.inner_text("[data-testid=plan-sha256]") == plan.sha256

    page.click("[data-testid=start-run]")
    page.wait_for_selector("[data-testid=run-done]", timeout=120_000)
    run = AnalysisRun.objects.get(trial=sim.trial)
    assert run.status == "done" and run.plan_sha256 == plan.sha256
    text = page.inner_text("#report")
    assert "arm X" in text and "Flow of cases" in text and "Primary endpoint" in text
    assert not arm_words(page.content())
    assert page.locator("img.plot").count() == 4
    # the plots are drawn on request: wait until every one has loaded
    for _ in range(120):
        if page.evaluate("() => Array.from(document.querySelectorAll('img.plot'))"
                         ".every(i => i.complete && i.naturalWidth > 0)"):
            break
        page.wait_for_timeout(500)
    else:
        pytest.fail("the plots did not load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "statistician-report.png"), full_page=True)

    with page.expect_download() as info:
        page.click("[data-testid=download-report]")
    report = tmp_path / "report.html"
    info.value.save_as(report)
    html = report.read_text()
    assert run.dataset_sha256 in html and html.count("data:image/png;base64,") == 4 and not arm_words(html)

    with page.expect_download() as info:
        page.click("[data-testid=download-export]")
    archive = tmp_path / "export.zip"
    info.value.save_as(archive)
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as z:
        names = {n.split("/", 1)[1] for n in z.namelist()}
    assert info.value.suggested_filename == "cxr-trial-e2e-stats-run001.zip"
    assert {"csv/reads.csv", "csv/quality_scores.csv", "csv/preferences.csv", "csv/reference_standard.csv",
            "spss/reads.sav", "stata/reads.dta", "xlsx/cxr-trial-e2e-stats-run001.xlsx",
            "data_dictionary.md"} <= names
