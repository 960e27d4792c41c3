"""A senior, in a real browser, signs reports off: the queue of both arms, "Sign as written", and an edit
with a reason that makes a new version (the reader's version is kept)."""
from __future__ import annotations

import pytest

from reading import services as reading_services
from reading.models import Read, Report
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login, next_code
from tests.reading.conftest import build_trial  # noqa: F401 - the fixture
from trial import services as trial_services
from trial.models import Role


def _submit_all(trial) -> dict[int, Report]:
    reports = {}
    for read in Read.objects.filter(trial=trial).select_related("reader__user", "trial", "case").order_by("pk"):
        reports[read.pk] = reading_services.submit_report(
            read_id=read.pk, by=read.reader.user, findings="Heart size normal.",
            impression=f"Impression of {read.case.code} by {read.reader.pseudonym}.", finding_flags={})
    return reports


def _queue_rows(page):
    return page.locator("table tbody tr")


@pytest.fixture
def signoff_trial(build_trial, investigator, make_user):
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=2, code="e2e-so")
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    reports = _submit_all(trial)
    senior = make_user("sena")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role=Role.SENIOR)
    return trial, senior, reports


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_senior_signs_one_report_as_written_and_edits_another_with_a_reason(page, signoff_trial):
    trial, senior, reports = signoff_trial
    login(page, senior.username, PASSWORD)
    page.goto(f"/t/{trial.code}/signoff/")
    rows = _queue_rows(page)
    assert rows.count() == 4  # both arms' reports, and nothing says which arm
    body = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
    assert "assisted" not in body.lower() and "standard" not in body.lower()

    # 1. Sign as written: no new version, signed by the senior.
    first = Report.objects.order_by("created_at", "pk").first()
    page.click(f"a[href='/t/{trial.code}/signoff/{first.pk}/']")
    page.wait_for_selector("#viewer[data-shown=true]")
    assert page.input_value("#impression") == first.impression
    # the first signing of the session: the password and a code of the authenticator again
    page.fill("[data-testid=signature] input[name=password]", PASSWORD)
    page.fill("[data-testid=signature] input[name=code]", next_code(senior.username))
    page.get_by_role("button", name="Sign as written").click()
    page.wait_for_url(f"**/t/{trial.code}/signoff/")
    page.wait_for_selector(f"text=Report of {first.read.case.code} signed.")
    assert _queue_rows(page).count() == 3
    first.refresh_from_db()
    assert first.signed_by == senior and first.signed_at is not None and first.version == 1
    assert Report.objects.filter(read=first.read).count() == 1

    # 2. Save my edit and sign: a new version with the reason, signed; the reader's version untouched.
    second = Report.objects.filter(signed_at__isnull=True).order_by("created_at", "pk").first()
    original_impression = second.impression
    page.click(f"a[href='/t/{trial.code}/signoff/{second.pk}/']")
    page.wait_for_selector("#viewer[data-shown=true]")
    page.fill("#impression", "Small right apical pneumothorax.")
    page.fill("#reason", "Missed pneumothorax at the right apex.")
    assert page.locator("[data-testid=signature] input[name=code]").count() == 0  # later: the password alone
    page.fill("[data-testid=signature] input[name=password]", PASSWORD)
    page.get_by_role("button", name="Save my edit and sign").click()
    page.wait_for_url(f"**/t/{trial.code}/signoff/")
    page.wait_for_selector(f"text=Report of {second.read.case.code} signed.")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "senior-signed.png"), full_page=True)
    assert _queue_rows(page).count() == 2
    versions = list(Report.objects.filter(read=second.read).order_by("version"))
    assert [v.version for v in versions] == [1, 2]
    old, new = versions
    assert old.impression == original_impression and old.signed_at is None and old.reason == ""
    assert new.impression == "Small right apical pneumothorax."
    assert new.reason == "Missed pneumothorax at the right apex."
    assert new.author == senior and new.signed_by == senior and new.signed_at is not None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_senior_edit_without_a_reason_is_refused_and_nothing_is_written(page, signoff_trial):
    trial, senior, reports = signoff_trial
    report = Report.objects.order_by("created_at", "pk").first()
    login(page, senior.username, PASSWORD)
    page.goto(f"/t/{trial.code}/signoff/{report.pk}/")
    page.fill("#impression", "Edited without saying why.")
    page.fill("[data-testid=signature] input[name=password]", PASSWORD)
    page.fill("[data-testid=signature] input[name=code]", next_code(senior.username))
    page.get_by_role("button", name="Save my edit and sign").click()
    page.wait_for_selector("text=A correction needs a reason.")
    # the senior's typing is still in the form
    assert page.input_value("#impression") == "Edited without saying why."
    assert Report.objects.filter(read=report.read).count() == 1
    report.refresh_from_db()
    assert report.signed_at is None
    page.goto(f"/t/{trial.code}/signoff/")
    assert _queue_rows(page).count() == 4
