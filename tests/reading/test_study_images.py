"""The reading screen shows every image of the case's study (a case is a study): the primary image first, then the
study's other images (a lateral), each served to the read's reader only, by its position in the case; staged images
(no case yet) never; a study whose other image has no values image yet falls back to its display PNG."""
from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reading.models import Read
from tests.live import another_view, arrive, assert_refused_to, case_with_lateral, image, open_trial
from trial.models import CaseImage

pytestmark = pytest.mark.django_db

IMAGE_KEYS = {"display_url", "values_url", "width", "height", "windows"}


@pytest.fixture
def live(investigator, make_user):
    # one site, two readers (one per arm): every case goes to both
    return open_trial(investigator=investigator, make_user=make_user, code="sv", settle_seconds=60)


@pytest.fixture
def study(live):
    """A case with a lateral (its standard read is available at once: no draft to wait for) and a case without."""
    case, single = case_with_lateral(live.trial, live.sites[0])
    read = Read.objects.select_related("reader__user").get(case=case, arm="standard")
    other = Read.objects.select_related("reader__user").get(case=case, arm="assisted")
    return {"case": case, "lateral": case.images.get(), "read": read, "other": other, "single": single,
            "single_read": Read.objects.get(case=single, arm="standard"), "live": live}


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _embedded(page: str) -> dict:
    match = re.search(r'<script id="read-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the reading page embeds its read"
    return json.loads(match.group(1))


def test_the_reader_gets_every_image_of_the_study_primary_first(study, client):
    read, case, lateral = study["read"], study["case"], study["lateral"]
    client.force_login(read.reader.user)
    payload = client.get(f"/api/reads/{read.pk}/").json()
    images = payload["images"]
    assert [(i["position"], i["view_position"]) for i in images] == [(1, "PA"), (2, "LL")]
    # the primary is the `image` the reading screen always had (and is preloaded from the page's head)
    assert {k: images[0][k] for k in IMAGE_KEYS} == payload["image"]
    assert payload["image"]["display_url"] == f"/r/{read.pk}/display.png"
    assert images[1]["display_url"] == f"/r/{read.pk}/2/display.png"
    assert images[1]["values_url"] == f"/r/{read.pk}/2/values.png"
    assert (images[1]["width"], images[1]["height"]) == (lateral.display_width, lateral.display_height)
    assert images[1]["windows"] == lateral.display_windows and lateral.display_windows
    # the page embeds the same read
    page = client.get(f"/t/{read.trial.code}/read/{read.pk}/")
    assert _embedded(page.content.decode()) == payload
    # each file is the stored one
    for position, stored in ((1, case), (2, lateral)):
        for kind, field in (("display", stored.display_image), ("values", stored.values_image)):
            url = images[position - 1][f"{kind}_url"]
            response = client.get(url)
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert _body(response) == field.open("rb").read(), url
    assert _body(client.get(images[0]["display_url"])) != _body(client.get(images[1]["display_url"]))


def test_a_case_without_other_images_has_its_primary_alone(study, client):
    read = study["single_read"]
    client.force_login(read.reader.user)
    payload = client.get(f"/api/reads/{read.pk}/").json()
    assert len(payload["images"]) == 1 and payload["images"][0]["position"] == 1
    assert client.get(f"/r/{read.pk}/1/display.png").status_code == 200  # position 1 is the primary too
    assert client.get(f"/r/{read.pk}/2/display.png").status_code == 403


def test_every_image_is_refused_to_anyone_but_the_reader_of_the_read(study, client, investigator, make_user):
    read, other = study["read"], study["other"]
    urls = [f"/r/{read.pk}/{n}/{kind}.png" for n in (1, 2) for kind in ("display", "values")]
    assert_refused_to(client, (other.reader.user, investigator, make_user("stranger")), urls)
    # the reader: beyond the study, at position 0, or a kind that is no file: refused
    client.force_login(read.reader.user)
    for url in (f"/r/{read.pk}/3/display.png", f"/r/{read.pk}/0/display.png", f"/r/{read.pk}/2/dicom.png",
                f"/r/{read.pk}/2/thumbnail.png"):
        assert client.get(url).status_code == 403, url
    # the other reader's own read of the same case: its images are theirs, not this reader's
    assert client.get(f"/r/{other.pk}/2/display.png").status_code == 403


def test_the_study_opens_to_the_assisted_reader_with_its_draft(study, client, investigator):
    """An assisted read waits for its draft: its other images too, as its primary image does; then all of them."""
    from ai.models import ModelVersion, TrialModel
    from tests.reading.conftest import make_draft

    other, case = study["other"], study["case"]
    client.force_login(other.reader.user)
    urls = [f"/r/{other.pk}/display.png", f"/r/{other.pk}/2/display.png", f"/r/{other.pk}/2/values.png"]
    assert [client.get(url).status_code for url in urls] == [403, 403, 403]
    model = ModelVersion.objects.create(name="m-sv", backend="http", url="http://127.0.0.1:9/v1")
    TrialModel.objects.create(trial=case.trial, model_version=model, assigned_by=investigator)
    make_draft(case, model)
    assert [client.get(url).status_code for url in urls] == [200, 200, 200]
    payload = client.get(f"/api/reads/{other.pk}/").json()
    assert [i["view_position"] for i in payload["images"]] == ["PA", "LL"]


def test_a_staged_image_is_never_shown(study, client):
    live, read = study["live"], study["read"]
    # a lateral whose study has no frontal image yet waits without a case
    assert arrive(live.trial, live.sites[0], another_view(4, of=image(5))) is None
    staged = CaseImage.objects.get(case__isnull=True)
    # and one of the reader's own study, as if it had not joined its case (case None): never shown either
    CaseImage.objects.filter(pk=study["lateral"].pk).update(case=None)
    assert staged.study_key != study["case"].study_key
    client.force_login(read.reader.user)
    payload = client.get(f"/api/reads/{read.pk}/").json()
    assert [i["position"] for i in payload["images"]] == [1]
    for n in (2, 3):
        assert client.get(f"/r/{read.pk}/{n}/display.png").status_code == 403


def test_an_image_without_its_values_yet_is_shown_from_its_display_png(study, client):
    read, lateral = study["read"], study["lateral"]
    CaseImage.objects.filter(pk=lateral.pk).update(values_image="", display_windows={})
    client.force_login(read.reader.user)
    second = client.get(f"/api/reads/{read.pk}/").json()["images"][1]
    assert second["values_url"] is None and second["windows"] == {}  # the viewer windows the display PNG
    assert client.get(f"/r/{read.pk}/2/display.png").status_code == 200
    assert client.get(f"/r/{read.pk}/2/values.png").status_code == 403


def test_the_payload_validates_against_its_declared_shape(study, client):
    from reading.serializers import ReadPayloadSerializer

    read = study["read"]
    client.force_login(read.reader.user)
    payload = client.get(f"/api/reads/{read.pk}/").json()
    checked = ReadPayloadSerializer(data=payload)
    assert checked.is_valid(), checked.errors


def test_the_other_images_cost_no_query(study, client):
    """The study's images come with the read (one joined statement): a read with a lateral, and its lateral's file,
    take as many queries as a read without one and its primary image."""
    client.force_login(study["read"].reader.user)

    def count(url):
        client.get(url)  # warm: the session's first use
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url)
            _body(response)
        assert response.status_code == 200, url
        return len(ctx)

    with_lateral, alone = study["read"].pk, study["single_read"].pk
    assert count(f"/api/reads/{with_lateral}/") == count(f"/api/reads/{alone}/")
    assert count(f"/r/{with_lateral}/2/display.png") == count(f"/r/{alone}/display.png")
