"""An investigator, in a real browser: creates a trial, adds a site, opens enrolment, uploads DICOM."""
from __future__ import annotations

import pytest

from tests import dicom_corpus as corpus
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login
from trial.models import Case, Trial


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_investigator_creates_a_trial_and_uploads_cases_with_progress(page, investigator, tmp_path):
    login(page, investigator.username, PASSWORD)
    page.get_by_role("link", name="New trial").click()
    page.fill("input[name=code]", "browser-1")
    page.fill("input[name=title]", "Browser trial")
    page.fill("input[name=registration_id]", "NCT07117266")
    page.select_option("select[name=mode]", "reader_study")  # the form offers a prospective trial first
    page.click("input[type=submit]")
    page.wait_for_url("**/t/browser-1/")
    assert Trial.objects.get(code="browser-1").findings[0] == "pleural effusion"

    page.fill("#id_code", "site-a")  # the site form is the first form with a code field
    page.fill("#id_name", "Hospital A")
    page.get_by_role("button", name="Add site").click()
    page.wait_for_selector("text=Site site-a added.")
    page.get_by_role("button", name="Move to “Enrolling”").click()
    page.wait_for_selector("[data-testid=trial-status]:has-text('Enrolling')")

    files = []
    for name, data in [("good-1.dcm", corpus.radiograph_bytes(seed=101, rows=400, columns=360)),
                       ("good-2.dcm", corpus.compressed_bytes("j2k", seed=102, rows=400, columns=360)),
                       ("ct.dcm", corpus.ct_modality())]:
        path = tmp_path / name
        path.write_bytes(data)
        files.append(str(path))
    page.get_by_role("link", name="Upload cases").click()
    page.wait_for_selector("#upload-form[data-ready=true]")  # the module has taken over the form (a deferred script)
    page.set_input_files("#files", files)
    page.fill("#history", "Cough for two weeks.")
    page.click("#upload-button")
    page.wait_for_selector("#upload-summary:has-text('2 of 3 files enrolled')")
    assert page.inner_text("#overall-progress") == "100 %"
    rows = page.locator("#upload-results tbody tr")
    assert rows.count() == 3
    assert "Enrolled as C0001" in rows.nth(0).inner_text()
    assert "CT" in rows.nth(2).inner_text()  # the reason, in words
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)
    assert Case.objects.filter(trial__code="browser-1").count() == 2

    page.goto("/t/browser-1/cases/")
    assert page.locator("img.thumb").count() == 2
    page.get_by_role("link", name="C0001").click()
    page.wait_for_selector("[data-testid=accession]")
