"""The senior writes the report of record (release policy "senior") on its own page: every image of the case's study
in the viewer, primary first, served by its position in the case to the senior who may write that record (the
page's own check), refused to everyone else and once it is signed; the two signed reports as 1 and 2, never by arm;
what the senior typed comes back with a refusal."""
from __future__ import annotations

import re

import pytest

from reading.models import Read, RecordReport
from tests.live import assert_refused_to, case_with_lateral, open_trial
from tests.reading.test_report_of_record import _read_and_sign
from tests.reading.test_signoff_images import _body, _images
from tests.signing import credentials
from trial import services as trial_services
from trial.models import Role

pytestmark = pytest.mark.django_db


def record_to_write(investigator, make_user, code: str):
    """A live trial whose senior writes the reports of record, a case with a lateral whose two reports that senior
    signed, and a case with a frontal film only, not read yet: (live, senior, case, single)."""
    live = open_trial(investigator=investigator, make_user=make_user, code=code, release_policy="senior",
                      require_signoff=True, draft_rule="read_without", settle_seconds=60)
    senior = make_user(f"{code}-senior")
    trial_services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    case, single = case_with_lateral(live.trial, live.sites[0])
    _read_and_sign(case, senior)
    return live, senior, case, single


@pytest.fixture
def world(investigator, make_user):
    live, senior, case, single = record_to_write(investigator, make_user, "rec")
    return {"trial": live.trial, "senior": senior, "case": case, "lateral": case.images.get(), "single": single,
            "investigator": investigator,
            "readers": [r.reader.user for r in Read.objects.filter(case=case).select_related("reader__user")]}


def _url(world, suffix: str = "") -> str:
    return f"/t/{world['trial'].code}/signoff/record/{world['case'].code}/{suffix}"


def test_the_queue_links_to_the_page_which_shows_every_image_and_both_reports_by_number(world, client):
    client.force_login(world["senior"])
    queue = client.get(f"/t/{world['trial'].code}/signoff/").content.decode()
    assert f'href="{_url(world)}"' in queue
    assert world["single"].code not in queue            # its reports are not signed yet
    page = client.get(_url(world))
    assert page.status_code == 200 and page["Cache-Control"].startswith("max-age=0")
    html = page.content.decode()
    images = _images(html)
    assert [(i["position"], i["view_position"]) for i in images] == [(1, "PA"), (2, "LL")]
    for described, stored in zip(images, (world["case"], world["lateral"]), strict=True):
        assert described["display_url"] == _url(world, f"{described['position']}/display.png")
        for kind, field in (("display", stored.display_image), ("values", stored.values_image)):
            response = client.get(described[f"{kind}_url"])
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert _body(response) == field.open("rb").read()
    assert client.get(_url(world, "3/display.png")).status_code == 403
    assert client.get(_url(world, "1/thumbnail.png")).status_code == 403
    # both signed reports, as 1 and 2, and no arm named anywhere on the page
    assert html.count('data-testid="signed-report"') == 2
    assert "standard findings" in html and "assisted findings" in html
    text = re.sub(r"<[^>]+>", " ", html).lower()
    assert "standard care" not in text and " arm" not in text
    assert "js/signoff.js" in html and all(" src=" in t or 'type="application/json"' in t
                                           for t in re.findall(r"<script\b[^>]*>", html))


def test_a_refusal_keeps_what_the_senior_typed_and_a_signature_closes_the_page(world, client):
    senior = world["senior"]
    client.force_login(senior)
    typed = {"findings": "Lateral shows a small effusion.", "impression": "Small left effusion.",
             "password": "wrong", "code": credentials(senior).code}
    response = client.post(_url(world), typed)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Lateral shows a small effusion." in html and "Small left effusion." in html
    assert len(_images(html)) == 2 and not RecordReport.objects.exists()
    good = credentials(senior)
    response = client.post(_url(world), {**typed, "password": good.password, "code": good.code})
    assert response.status_code == 302
    record = RecordReport.objects.get()
    assert record.impression == "Small left effusion." and record.author == senior
    # signed: the page and its images are gone for everyone
    assert client.get(_url(world)).status_code == 403
    assert client.get(_url(world, "2/display.png")).status_code == 403


def test_nobody_else_sees_the_page_or_its_images(world, client):
    urls = [_url(world), _url(world, "1/display.png"), _url(world, "2/values.png")]
    assert_refused_to(client, [*world["readers"], world["investigator"]], urls)
