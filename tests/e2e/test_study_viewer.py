"""Every image of a case's study in a real browser: the reader and the expert see the frontal film and its lateral
side by side (one at a time on a narrow screen, with a strip to switch), each with its own window/level, and its
view position as a caption; the reading time counts the primary image's paint once, as before."""
from __future__ import annotations

import io

import pydicom
import pytest

from reading.models import Read, ReadEvent
from tests import dicom_corpus as corpus
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login
from tests.live import image
from tests.reading.conftest import build_trial  # noqa: F401  (fixture)
from tests.scoring.conftest import add_experts, submit_all_reads
from tests.scoring.helpers import answer_before, mine
from trial import services as trial_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _trial_with_a_lateral(build_trial, investigator, code):  # noqa: F811
    """A reader study in reading whose first case has a lateral (enrolled after its frontal image)."""
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=2, code=code, start_reading=False)
    frontal = pydicom.dcmread(io.BytesIO(corpus.radiograph_bytes(seed=1000, rows=160, columns=140)),
                              stop_before_pixels=True)  # build_trial's first case
    lateral = image(2000, ViewPosition="LL", StudyInstanceUID=frontal.StudyInstanceUID,
                    SeriesInstanceUID=frontal.SeriesInstanceUID)
    assert trial_services.enrol_case(trial=trial, site=cases[0].site, by=investigator, data=lateral) == cases[0]
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="reading")
    return trial, readers, cases


def _watch(page):
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return requests, problems


def _drag(page, canvas):
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=5)
    page.mouse.up()


def _states(page, viewers: str) -> list[dict]:
    return page.evaluate(f"() => {viewers}.viewers().map((v) => v.state())")


def _each_image_has_its_own_window(page, viewers: str):
    """W/L drag, a preset key and invert on the second image change it alone; reset brings it back."""
    page.wait_for_function(f"() => {viewers}.viewers().every((v) => v.state().valuesLoaded)")
    canvases = page.locator("#viewer canvas")
    assert canvases.count() == 2 and canvases.nth(0).is_visible() and canvases.nth(1).is_visible()
    first, second = canvases.nth(0).bounding_box(), canvases.nth(1).bounding_box()
    assert second["x"] >= first["x"] + first["width"] - 2  # side by side
    assert page.locator("#viewer .cxr-caption").all_inner_texts() == ["1 · PA", "2 · LL"]
    before = _states(page, viewers)
    _drag(page, canvases.nth(1))
    after = _states(page, viewers)
    assert after[0] == before[0]  # the primary image is untouched
    assert (after[1]["center"], after[1]["width"]) != (before[1]["center"], before[1]["width"])
    page.keyboard.press("2")  # the keys act on the image last clicked: the lateral
    page.keyboard.press("i")
    after = _states(page, viewers)
    assert after[1]["preset"] == "auto" and after[1]["invert"] and not after[0]["invert"]
    assert after[0]["preset"] == before[0]["preset"]
    page.keyboard.press("r")
    reset = _states(page, viewers)
    assert (reset[1]["center"], reset[1]["width"], reset[1]["invert"]) == (
        before[1]["center"], before[1]["width"], False)
    # now the primary: the keys follow the click
    canvases.nth(0).click()
    page.keyboard.press("i")
    assert [s["invert"] for s in _states(page, viewers)] == [True, False]


def test_the_reader_sees_the_frontal_and_the_lateral_side_by_side(page, build_trial, investigator):  # noqa: F811
    trial, _, cases = _trial_with_a_lateral(build_trial, investigator, "e2s")
    read = Read.objects.select_related("reader__user").get(case=cases[0], arm="standard")
    login(page, read.reader.user.username, PASSWORD)
    requests, problems = _watch(page)
    page.goto(f"/t/{trial.code}/read/{read.pk}/")
    page.wait_for_function("() => document.getElementById('read-app').dataset.imageShownMs !== undefined")
    page.wait_for_selector("#viewer[data-images-shown='2']")
    assert page.get_attribute("#viewer", "data-layout") == "all"
    _each_image_has_its_own_window(page, "window.CxrReading.study")
    # each image asked for once; the reading time counted the primary image's paint once
    assert sum(u.endswith(f"/r/{read.pk}/display.png") for u in requests) == 1, requests
    assert sum(u.endswith(f"/r/{read.pk}/2/display.png") for u in requests) == 1, requests
    assert sum(u.endswith(f"/r/{read.pk}/2/values.png") for u in requests) == 1, requests
    page.wait_for_function("() => window.CxrReading.current() !== null")
    assert ReadEvent.objects.filter(read=read, kind="image_shown").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reader-study-side-by-side.png"))

    # a narrow screen: one image at a time, a strip to switch, and side by side on demand
    page.set_viewport_size({"width": 560, "height": 900})
    page.wait_for_selector("#viewer[data-layout='one']")
    canvases = page.locator("#viewer canvas")
    assert canvases.nth(0).is_visible() and not canvases.nth(1).is_visible()
    page.get_by_role("button", name="2 · LL").click()
    page.wait_for_function("() => document.querySelectorAll('#viewer canvas')[1].getBoundingClientRect().width > 0")
    assert not canvases.nth(0).is_visible() and canvases.nth(1).is_visible()
    page.get_by_role("button", name="Side by side").click()
    page.wait_for_selector("#viewer[data-layout='all']")
    assert canvases.nth(0).is_visible() and canvases.nth(1).is_visible()
    page.screenshot(path=str(ARTIFACTS / "reader-study-narrow.png"))

    # the next case has its primary image alone: no strip, one canvas
    page.set_viewport_size({"width": 1400, "height": 900})
    nxt = Read.objects.get(case=cases[1], reader=read.reader)
    page.goto(f"/t/{trial.code}/read/{nxt.pk}/")
    page.wait_for_selector("#viewer[data-images-shown='1']")
    assert page.locator("#viewer canvas").count() == 1 and not page.locator("#viewer .cxr-strip").is_visible()
    assert not problems, problems  # a content security policy violation is reported as an error


def test_the_expert_sees_every_image_of_the_study_on_the_pair(page, build_trial, investigator, make_user):  # noqa: F811
    trial, readers, cases = _trial_with_a_lateral(build_trial, investigator, "e2x")
    experts = add_experts(trial, investigator, make_user, 5)
    submit_all_reads(trial)
    trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    expert = experts[0]
    pair = mine(expert, kind="pair", case=cases[0])[0]
    answer_before(pair, expert)
    login(page, expert.username, PASSWORD)
    requests, problems = _watch(page)
    page.goto(f"/t/{trial.code}/score/{pair.key}/")
    page.wait_for_selector("#viewer[data-shown=true]")
    page.wait_for_selector("#viewer[data-images-shown='2']")
    _each_image_has_its_own_window(page, "window.CxrStudy")
    body = page.inner_text("body")
    for blinded in ("assisted", "standard", cases[0].code, "site-a", *[u.username for u in readers]):
        assert blinded not in body
    assert any(u.endswith(f"/score/{pair.key}/2/display.png") for u in requests), requests
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "expert-study-pair.png"))
    assert not problems, problems


def test_the_senior_writes_the_report_of_record_looking_at_every_image(page, investigator, make_user):
    from reading.models import RecordReport
    from tests.e2e.conftest import next_code
    from tests.reading.test_record_page import record_to_write

    live, senior, case, _ = record_to_write(investigator, make_user, "e2rec")
    login(page, senior.username, PASSWORD)
    requests, problems = _watch(page)
    page.goto(f"/t/{live.trial.code}/signoff/")
    page.get_by_role("link", name="Write").click()
    page.wait_for_selector("#viewer[data-shown=true]")
    page.wait_for_selector("#viewer[data-images-shown='2']")
    _each_image_has_its_own_window(page, "window.CxrStudy")
    assert page.locator("[data-testid=signed-report]").count() == 2
    assert any(u.endswith(f"/signoff/record/{case.code}/2/display.png") for u in requests), requests
    page.fill("#impression", "Small left pleural effusion, seen on the lateral.")
    page.fill("[data-testid=signature] input[name=password]", PASSWORD)
    page.fill("[data-testid=signature] input[name=code]", next_code(senior.username))
    page.get_by_role("button", name="Sign as the report of record").click()
    page.wait_for_selector(f"text=The report of record of {case.code} is signed.")
    assert RecordReport.objects.get(case=case).impression == "Small left pleural effusion, seen on the lateral."
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "senior-report-of-record.png"))
    assert not problems, problems
