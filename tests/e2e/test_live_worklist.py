"""A prospective (live) trial's worklist, in a real browser: a case that arrives while the reader has the worklist open
appears on it without a reload; a reader who goes off duty in the browser receives no new case, and their page shows
none after several refreshes."""
from __future__ import annotations

import time

import pytest

from reading.models import Read, ReadStatus
from tests.conftest import PASSWORD
from tests.e2e.conftest import login
from tests.live import arrive, image, open_trial
from trial.models import AuditEvent, Membership

STANDARD = "standard"
REFRESH_SECONDS = 1  # the worklist asks for new cases this often here (10 s by default)
# The worklist page sets this on `window`; a reload would lose it.
MARKER = "window.__liveWorklistMarker"


@pytest.fixture
def live_trial(settings, investigator, make_user):
    """A prospective paired-parallel trial, opened, with one site and two readers (split 1:1 at the opening) and no AI
    model: the standard-arm reader's reads can be opened as soon as they are made."""
    settings.CXR_WORKLIST_REFRESH_SECONDS = REFRESH_SECONDS
    live = open_trial(investigator=investigator, make_user=make_user, code="e2e-live", readers_per_site=2)
    assert live.trial.status == "open" and live.trial.mode == "prospective"
    [standard] = live.readers_of(site=live.sites[0], arm=STANDARD)
    assert standard.on_duty  # readers start on duty
    return live, standard


def _open_worklist(page, live, member: Membership) -> None:
    login(page, member.user.username, PASSWORD)
    page.goto(f"/t/{live.trial.code}/read/")
    assert page.get_attribute("#worklist", "data-live-every") == str(REFRESH_SECONDS)
    page.evaluate(f"() => {{ {MARKER} = 'still the same page'; }}")


def _not_reloaded(page) -> bool:
    return page.evaluate(f"() => {MARKER} === 'still the same page'")


def _row_codes(page) -> list[str]:
    return page.locator("#worklist-rows tr[data-read-id] td.case-code").all_inner_texts()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_case_that_arrives_appears_on_the_open_worklist_without_a_reload(page, live_trial):
    live, standard = live_trial
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    _open_worklist(page, live, standard)
    assert _row_codes(page) == []
    assert "New cases appear here as they arrive" in page.inner_text("#worklist-rows")
    assert page.inner_text("[data-testid=duty]") == "On duty"

    case = arrive(live.trial, live.sites[0], image(1), source="simulator")  # from the test's process, as the PACS
    read = Read.objects.get(case=case, arm=STANDARD)
    assert read.reader_id == standard.pk  # routed at once to the arm's one reader on duty

    started = time.monotonic()
    row = page.locator(f"#worklist-rows tr[data-read-id='{read.pk}']")
    row.wait_for(timeout=(REFRESH_SECONDS + 4) * 1000)
    appeared_after = time.monotonic() - started
    assert appeared_after < REFRESH_SECONDS + 4
    assert _not_reloaded(page), "the worklist reloaded itself instead of swapping in the new rows"
    assert _row_codes(page) == [case.code]
    # the new row can be opened at once (standard arm: no draft to wait for), says when it arrived, and the resume
    # link and the progress were swapped in with it
    link = row.locator(f"a[href='/t/{live.trial.code}/read/{read.pk}/']")
    assert link.inner_text() == case.code
    assert row.locator("[data-testid=age]").inner_text().endswith("ago")
    assert "Open" in row.inner_text()
    page.locator("[data-testid=resume]").wait_for()
    assert page.get_attribute("[data-testid=resume]", "href") == f"/t/{live.trial.code}/read/{read.pk}/"
    assert " ".join(page.inner_text("[data-testid=progress]").split()) == "0 of 1 read"
    assert _not_reloaded(page)
    assert not problems, problems
    # and the swapped-in link works: it opens the read
    link.click()
    page.wait_for_url(f"**/t/{live.trial.code}/read/{read.pk}/")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_reader_who_goes_off_duty_in_the_browser_receives_no_new_case(page, live_trial):
    live, standard = live_trial
    site = live.sites[0]
    first = arrive(live.trial, site, image(1), source="simulator")
    first_read = Read.objects.get(case=first, arm=STANDARD)
    assert first_read.reader_id == standard.pk
    _open_worklist(page, live, standard)
    assert _row_codes(page) == [first.code]

    page.click("[data-testid=go-off-duty]")  # a form post: the page comes back saying so
    page.wait_for_selector("[data-testid=go-on-duty]")
    assert page.inner_text("[data-testid=duty]").startswith("Off duty")
    standard.refresh_from_db()
    assert not standard.on_duty
    assert AuditEvent.objects.filter(action="reader.off_duty", object_id=str(standard.pk),
                                     actor=standard.user).exists()
    page.evaluate(f"() => {{ {MARKER} = 'still the same page'; }}")  # the post loaded the page anew

    second = arrive(live.trial, site, image(2), source="simulator")
    # not routed to the reader off duty: the arm's only reader, so the case waits in that arm (the other arm's read
    # is not held back)
    assert not Read.objects.filter(case=second, reader=standard).exists()
    assert not Read.objects.filter(case=second, arm=STANDARD).exclude(status=ReadStatus.REROUTED).exists()
    assert Read.objects.filter(case=second, arm="assisted").count() == 1

    # several refreshes later the page still shows only the first case (and it did refresh, without a reload)
    with page.expect_request(lambda r: r.url.endswith(f"/t/{live.trial.code}/read/") and r.method == "GET"):
        pass
    time.sleep(3 * REFRESH_SECONDS + 0.5)
    assert _not_reloaded(page)
    assert _row_codes(page) == [first.code]
    assert second.code not in page.inner_text("#worklist")
    assert page.inner_text("[data-testid=duty]").startswith("Off duty")
