"""The investigator's case page lists every image of the case's study (a case is a study): the primary first and
marked, then the others as received, each with its thumbnail, view position and when it arrived and joined the case;
each image's files served by its position in the case to investigators only; staged images (no case yet) never."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.core.exceptions import PermissionDenied

from tests.live import another_view, arrive, image, open_trial
from trial import selectors
from trial import services as trial_services
from trial.access import access_for
from trial.models import CaseImage, Role

pytestmark = pytest.mark.django_db

RECEIVED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
ADDED = datetime(2025, 3, 14, 9, 27, 41, tzinfo=UTC)


@pytest.fixture
def world(investigator, make_user, settings):
    settings.TIME_ZONE = "UTC"  # the page's times, compared below
    live = open_trial(investigator=investigator, make_user=make_user, code="ci", settle_seconds=60)
    site = live.sites[0]
    frontal = image(1)
    # the lateral arrives first and waits for its study's frontal film, which makes the case it joins
    assert arrive(live.trial, site, another_view(2, of=frontal)) is None
    case = arrive(live.trial, site, frontal)
    lateral = case.images.get()
    CaseImage.objects.filter(pk=lateral.pk).update(received_at=RECEIVED, added_at=ADDED)
    lateral.refresh_from_db()
    single = arrive(live.trial, site, image(3))
    return {"live": live, "trial": live.trial, "case": case, "lateral": lateral, "single": single}


def _rows(page: str) -> list[str]:
    table = re.search(r'<table[^>]*data-testid="study-images".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return re.findall(r"<tr\b.*?</tr>", table, re.S)


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_case_page_lists_every_image_of_the_study_primary_first(world, client, investigator):
    trial, case = world["trial"], world["case"]
    client.force_login(investigator)
    page = client.get(f"/t/{trial.code}/cases/{case.code}/").content.decode()
    rows = _rows(page)
    assert len(rows) == 2 and "Images of the study (2)" in page
    primary, second = rows
    base = f"/t/{trial.code}/cases/{case.code}"
    # the primary: position 1, marked, its view and its thumbnail (linking to its display PNG)
    assert 'data-position="1"' in primary and 'data-testid="primary"' in primary and "PA" in primary
    assert f'src="{base}/1/thumbnail.png"' in primary and f'href="{base}/1/display.png"' in primary
    # the lateral: position 2, not marked, when it was received and when it joined the case
    assert 'data-position="2"' in second and 'data-testid="primary"' not in second and "LL" in second
    assert f'src="{base}/2/thumbnail.png"' in second and f'href="{base}/2/display.png"' in second
    assert "2025-03-14 09:26:53" in second and "2025-03-14 09:27:41" in second
    assert page.count('data-testid="primary"') == 1


def test_each_image_is_served_by_its_position(world, client, investigator):
    trial, case, lateral = world["trial"], world["case"], world["lateral"]
    client.force_login(investigator)
    base = f"/t/{trial.code}/cases/{case.code}"
    for position, stored in ((1, case), (2, lateral)):
        for kind, field in (("display", stored.display_image), ("thumbnail", stored.thumbnail)):
            response = client.get(f"{base}/{position}/{kind}.png")
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert _body(response) == field.open("rb").read(), (position, kind)
    assert _body(client.get(f"{base}/1/display.png")) != _body(client.get(f"{base}/2/display.png"))
    # position 1 is the case's own image, as at the address without a position
    assert _body(client.get(f"{base}/1/display.png")) == _body(client.get(f"{base}/display.png"))


def test_a_case_without_other_images_lists_its_primary_alone(world, client, investigator):
    trial, single = world["trial"], world["single"]
    client.force_login(investigator)
    rows = _rows(client.get(f"/t/{trial.code}/cases/{single.code}/").content.decode())
    assert len(rows) == 1 and 'data-testid="primary"' in rows[0]
    assert client.get(f"/t/{trial.code}/cases/{single.code}/2/display.png").status_code == 403


def test_images_are_refused_to_everyone_but_investigators(world, client, investigator, make_user):
    trial, case, live = world["trial"], world["case"], world["live"]
    urls = [f"/t/{trial.code}/cases/{case.code}/{n}/{kind}.png" for n in (1, 2) for kind in ("display", "thumbnail")]
    senior, expert, statistician = make_user("ci-senior"), make_user("ci-expert"), make_user("ci-statistician")
    for user, role in ((senior, Role.SENIOR), (expert, Role.EXPERT), (statistician, Role.STATISTICIAN)):
        trial_services.add_member(trial=trial, by=investigator, user=user, role=role)
    for user in (*live.readers, senior, expert, statistician, make_user("ci-stranger")):
        client.force_login(user)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 403, (user.username, url)
            assert response.get("Content-Type") != "image/png"
        assert client.get(f"/t/{trial.code}/cases/{case.code}/").status_code == 403
    client.logout()
    assert all(client.get(url).status_code == 302 for url in urls)  # to the login page
    # an investigator of another trial, naming this trial or their own
    other = make_user("ci-other-investigator", can_create_trials=True)
    elsewhere = open_trial(investigator=other, make_user=make_user, code="ci-b")
    client.force_login(other)
    assert client.get(urls[0]).status_code == 403
    assert client.get(f"/t/{elsewhere.trial.code}/cases/{case.code}/2/display.png").status_code == 403


def test_unknown_positions_and_kinds_are_refused(world, client, investigator):
    trial, case = world["trial"], world["case"]
    client.force_login(investigator)
    for n, kind in ((0, "display"), (3, "display"), (2, "values"), (2, "dicom"), (1, "dicom"), (1, "values")):
        assert client.get(f"/t/{trial.code}/cases/{case.code}/{n}/{kind}.png").status_code == 403, (n, kind)
        with pytest.raises(PermissionDenied, match="Unknown image."):
            selectors.case_study_image_for(access=access_for(user=investigator, code=trial.code), code=case.code,
                                           position=n, kind=kind)


def test_a_staged_image_is_never_listed_or_served(world, client, investigator):
    trial, case, live = world["trial"], world["case"], world["live"]
    # a lateral whose study has no frontal film yet waits without a case
    assert arrive(trial, live.sites[0], another_view(4, of=image(5))) is None
    assert CaseImage.objects.filter(trial=trial, case__isnull=True).count() == 1
    # and this case's own lateral, as if it had not joined its case (case None)
    CaseImage.objects.filter(pk=world["lateral"].pk).update(case=None)
    client.force_login(investigator)
    rows = _rows(client.get(f"/t/{trial.code}/cases/{case.code}/").content.decode())
    assert len(rows) == 1 and 'data-position="1"' in rows[0]
    for n in (2, 3):
        assert client.get(f"/t/{trial.code}/cases/{case.code}/{n}/display.png").status_code == 403
    images = selectors.case_images(access=access_for(user=investigator, code=trial.code), case=case)
    assert [(i.position, i.primary, i.image) for i in images] == [(1, True, case)]


def test_the_selector_refuses_other_roles_and_other_trials_cases(world, investigator, make_user):
    trial, case, live = world["trial"], world["case"], world["live"]
    with pytest.raises(PermissionDenied):
        selectors.case_images(access=access_for(user=live.readers[0], code=trial.code), case=case)
    other = make_user("ci-other", can_create_trials=True)
    elsewhere = open_trial(investigator=other, make_user=make_user, code="ci-c")
    with pytest.raises(PermissionDenied, match="No such case in this trial."):
        selectors.case_images(access=access_for(user=other, code=elsewhere.trial.code), case=case)
