"""A reader, in a real browser, reads one case in each arm: worklist, window/level, the draft (assisted)
or an empty editor (standard), a reload in the middle with the text intact, submit; time is plausible
and the report immutable."""
from __future__ import annotations

import time

import pytest

from reading.models import Read, Report
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login
from tests.reading.conftest import DRAFT_IMPRESSION, build_trial  # noqa: F401 - the fixture


def _read_one_case(page, read, *, typed: str, expect_draft: bool):
    page.goto(f"/t/{read.trial.code}/read/")
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.click(f"a[href='/t/{read.trial.code}/read/{read.pk}/']")
    page.wait_for_function("() => document.getElementById('read-app').dataset.imageShownMs !== undefined")
    # The page brought the read with it (no round trip to the read API before the radiograph), and the
    # radiograph was asked for once (the preload from the head is what the viewer painted).
    assert not any(f"GET {page.url.split('/t/')[0]}/api/reads/{read.pk}/" == r for r in requests), requests
    assert sum(r.endswith(f"/r/{read.pk}/display.png") for r in requests) == 1, requests
    assert not problems, problems  # a content security policy violation is reported as an error
    impression = page.locator("#impression")
    if expect_draft:
        assert impression.input_value() == DRAFT_IMPRESSION
        assert "AI draft" in page.inner_text("#text-source")
    else:
        assert impression.input_value() == ""
    # window/level on the real values (the 16-bit values image loads after the first paint)
    page.wait_for_function("() => window.CxrReading.viewer.state().valuesLoaded")
    overlay_before = page.inner_text("#viewer")
    box = page.locator("#viewer canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=5)
    page.mouse.up()
    assert page.inner_text("#viewer") != overlay_before
    impression.fill(typed)
    page.wait_for_function("() => /Saved/.test(document.getElementById('save-status').textContent)")
    time.sleep(1.5)  # some reading time
    page.reload()
    page.wait_for_function("() => document.getElementById('read-app').dataset.imageShownMs !== undefined")
    assert page.locator("#impression").input_value() == typed  # nothing typed is lost
    page.click("#submit-button")
    page.wait_for_selector("#confirm-modal.show")
    page.wait_for_function("() => document.activeElement.id === 'confirm-button'")
    page.click("#confirm-button")
    page.wait_for_selector("#correct-button:visible")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_reader_reads_one_case_in_each_arm(page, build_trial):
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=2, code="e2e")
    assisted = Read.objects.filter(trial=trial, arm="assisted").select_related("reader__user", "trial").first()
    standard = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user", "trial").first()
    for read, typed, expect_draft in [(assisted, "Small left effusion, confirmed.", True),
                                      (standard, "No acute abnormality.", False)]:
        page.context.clear_cookies()
        login(page, read.reader.user.username, PASSWORD)
        _read_one_case(page, read, typed=typed, expect_draft=expect_draft)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"reader-{read.arm}-submitted.png"))
        read.refresh_from_db()
        report = Report.objects.get(read=read)
        assert read.status == "submitted" and report.impression == typed
        # plausible server-measured time: at least the pause, at most the wall time of the test
        assert 1.0 <= read.active_seconds <= read.wall_seconds <= 120
    assert Report.objects.get(read=assisted).draft_kept_share is not None
    assert Report.objects.get(read=standard).draft_kept_share is None
