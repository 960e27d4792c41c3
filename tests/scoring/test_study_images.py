"""The scoring screens show every image of the case's study, blinded: each served to the expert of the item (or the
adjudicator of the case) only, named by its position in the case, with nothing that identifies the case, its site,
its arm or its reader; staged images never."""
from __future__ import annotations

import io
import json
import re

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scoring import selectors, services
from scoring.serializers import AdjudicationViewSerializer, ItemSerializer
from tests import dicom_corpus as corpus
from tests.live import assert_refused_to, image
from tests.scoring.conftest import add_experts, submit_all_reads
from tests.scoring.helpers import answer, answer_before, mine
from trial import services as trial_services
from trial.access import access_to
from trial.models import CaseImage, Membership, Role

pytestmark = pytest.mark.django_db

STUDY_IMAGE_KEYS = {"position", "view_position", "display_url", "values_url", "width", "height", "windows"}


@pytest.fixture
def study(build_trial, investigator, make_user, django_capture_on_commit_callbacks):
    """A reader study in scoring whose first case has a lateral (enrolled after its frontal image, the same study)
    and whose second case has its primary image alone; six experts, the last the adjudicator."""
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=2, code="ss", start_reading=False)
    frontal = pydicom.dcmread(io.BytesIO(corpus.radiograph_bytes(seed=1000, rows=160, columns=140)),
                              stop_before_pixels=True)  # build_trial's first case
    lateral = image(2000, ViewPosition="LL", StudyInstanceUID=frontal.StudyInstanceUID,
                    SeriesInstanceUID=frontal.SeriesInstanceUID)
    with django_capture_on_commit_callbacks(execute=True):
        joined = trial_services.enrol_case(trial=trial, site=cases[0].site, by=investigator, data=lateral)
    assert joined == cases[0] and cases[0].images.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        trial = trial_services.transition_trial(trial=trial, by=investigator, to="reading")
    experts = add_experts(trial, investigator, make_user, 6)
    services.update_settings(trial=trial, by=investigator,
                             adjudicator=Membership.objects.get(trial=trial, user=experts[5], role=Role.EXPERT))
    submit_all_reads(trial)
    with django_capture_on_commit_callbacks(execute=True):
        trial = trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    for case in cases:
        case.refresh_from_db()
    panel = [u for u in experts if mine(u)]
    return {"trial": trial, "cases": cases, "lateral": cases[0].images.get(), "panel": panel,
            "adjudicator": experts[5], "readers": readers}


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _pair(study, expert=None):
    """The expert's side-by-side (A/B) item of the case with the lateral, its earlier items answered."""
    expert = expert or study["panel"][0]
    pair = mine(expert, kind="pair", case=study["cases"][0])[0]
    answer_before(pair, expert)
    return expert, pair


def _forbidden(study) -> list[str]:
    """What an expert must never read: site codes and names, case codes, reader names, the arm names."""
    trial = study["trial"]
    words = ["assisted", "standard"]
    words += [v for site in trial.sites.all() for v in (site.code, site.name)]
    words += [case.code for case in study["cases"]]
    for member in Membership.objects.filter(trial=trial, role=Role.READER).select_related("user"):
        words += [member.pseudonym, member.user.username]
    return words


def _leaks(text: str, words: list[str]) -> list[str]:
    return [w for w in words if re.search(rf"(?<![A-Za-z0-9_]){re.escape(w)}(?![A-Za-z0-9_])", text, re.I)]


@pytest.mark.parametrize("kind", ["reference", "quality", "pair"])
def test_every_item_shows_every_image_of_the_study_primary_first(study, client, kind):
    expert = study["panel"][0]
    assignment = mine(expert, kind=kind, case=study["cases"][0])[0]
    answer_before(assignment, expert)
    trial, key = study["trial"], assignment.key
    client.force_login(expert)
    item = client.get(f"/api/scoring/items/{key}/").json()
    images = item["images"]
    assert [(i["position"], i["view_position"]) for i in images] == [(1, "PA"), (2, "LL")]
    assert all(set(i) == STUDY_IMAGE_KEYS for i in images)
    assert {k: images[0][k] for k in item["image"]} == item["image"]  # the primary is the item's `image`
    assert images[0]["display_url"] == f"/t/{trial.code}/score/{key}/display.png"
    assert images[1]["display_url"] == f"/t/{trial.code}/score/{key}/2/display.png"
    assert images[1]["values_url"] == f"/t/{trial.code}/score/{key}/2/values.png"
    assert ItemSerializer(data=item).is_valid()
    # the page embeds the same description for its viewer (a JSON data block, no inline script)
    page = client.get(f"/t/{trial.code}/score/{key}/").content.decode()
    block = re.search(r'<script id="item-images" type="application/json">(.*?)</script>', page, re.S)
    assert block and json.loads(block.group(1)) == images
    # each file is the stored one, with no file name
    lateral, case = study["lateral"], study["cases"][0]
    for position, stored in ((1, case), (2, lateral)):
        for name, field in (("display", stored.display_image), ("values", stored.values_image)):
            response = client.get(images[position - 1][f"{name}_url"])
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert "Content-Disposition" not in response
            assert _body(response) == field.open("rb").read()


def test_the_study_is_not_shown_before_its_item_is_available(study, client):
    expert = study["panel"][0]
    pair = mine(expert, kind="pair", case=study["cases"][0])[0]  # its earlier items unanswered
    client.force_login(expert)
    item = client.get(f"/api/scoring/items/{pair.key}/").json()
    assert item["image"] is None and item["images"] == []
    assert "item-images" not in client.get(f"/t/{study['trial'].code}/score/{pair.key}/").content.decode()


def test_every_image_is_refused_to_anyone_but_the_items_expert(study, client, investigator, outsider):
    trial = study["trial"]
    expert, pair = _pair(study)
    urls = [f"/t/{trial.code}/score/{pair.key}/{n}/{kind}.png" for n in (1, 2) for kind in ("display", "values")]
    client.force_login(expert)
    assert all(client.get(url).status_code == 200 for url in urls)
    others = [u for u in study["panel"] if u != expert] + [study["adjudicator"], investigator, outsider,
                                                           *study["readers"]]
    assert_refused_to(client, others, urls)
    # the expert: beyond the study, position 0, a kind that is no file, another expert's key: refused
    client.force_login(expert)
    theirs = mine(study["panel"][1], kind="pair", case=study["cases"][0])[0]
    for url in (f"/t/{trial.code}/score/{pair.key}/3/display.png", f"/t/{trial.code}/score/{pair.key}/0/display.png",
                f"/t/{trial.code}/score/{pair.key}/2/dicom.png", f"/t/{trial.code}/score/{theirs.key}/2/display.png"):
        assert client.get(url).status_code == 403, url


def test_the_study_images_carry_nothing_identifying(study, client):
    trial = study["trial"]
    expert, pair = _pair(study)
    client.force_login(expert)
    forbidden = _forbidden(study)
    item = client.get(f"/api/scoring/items/{pair.key}/")
    page = client.get(f"/t/{trial.code}/score/{pair.key}/")
    assert not _leaks(json.dumps(item.json()["images"]), forbidden)
    assert not _leaks(page.content.decode(), forbidden)
    # the URLs name the trial, the expert's own opaque key and the image's position: no database id of anything
    for entry in item.json()["images"]:
        for url in (entry["display_url"], entry["values_url"]):
            assert re.fullmatch(rf"/t/{trial.code}/score/{pair.key}/(2/)?(display|values)\.png", url), url
    lateral = study["lateral"]
    assert f"/{lateral.pk}/" not in json.dumps(item.json())
    response = client.get(f"/t/{trial.code}/score/{pair.key}/2/display.png")
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    assert not _leaks(headers, forbidden) and "filename" not in headers


def test_a_staged_image_is_never_shown_to_an_expert(study, client):
    trial = study["trial"]
    expert, pair = _pair(study)
    CaseImage.objects.filter(pk=study["lateral"].pk).update(case=None)  # as if it had not joined its case
    client.force_login(expert)
    assert [i["position"] for i in client.get(f"/api/scoring/items/{pair.key}/").json()["images"]] == [1]
    assert client.get(f"/t/{trial.code}/score/{pair.key}/2/display.png").status_code == 403


def test_an_image_without_its_values_yet_is_shown_from_its_display_png(study, client):
    trial = study["trial"]
    expert, pair = _pair(study)
    CaseImage.objects.filter(pk=study["lateral"].pk).update(values_image="", display_windows={})
    client.force_login(expert)
    second = client.get(f"/api/scoring/items/{pair.key}/").json()["images"][1]
    assert second["values_url"] is None and second["windows"] == {}
    assert client.get(f"/t/{trial.code}/score/{pair.key}/2/display.png").status_code == 200
    assert client.get(f"/t/{trial.code}/score/{pair.key}/2/values.png").status_code == 403


def test_a_case_without_other_images_costs_no_query_for_them(study, client):
    """Whether a case has other images comes with the expert's assignment: an item of a case without any asks for
    none; one with a lateral asks once."""
    trial = study["trial"]
    expert = study["panel"][0]
    alone = mine(expert, kind="reference", case=study["cases"][1])[0]
    with_lateral = mine(expert, kind="reference", case=study["cases"][0])[0]
    client.force_login(expert)

    def queries(url):
        client.get(url)  # warm: the session's first use
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    def of_images(sqls):  # statements that read image rows (not the EXISTS inside the assignment's)
        return [q for q in sqls if q.startswith(f'SELECT "{CaseImage._meta.db_table}".')]

    alone_queries = queries(f"/t/{trial.code}/score/{alone.key}/")
    lateral_queries = queries(f"/t/{trial.code}/score/{with_lateral.key}/")
    assert not of_images(alone_queries) and len(of_images(lateral_queries)) == 1
    assert len(lateral_queries) == len(alone_queries) + 1
    assert not of_images(queries(f"/t/{trial.code}/score/{with_lateral.key}/display.png"))  # the primary: none


def _dispute(study):
    """The case with the lateral, disputed: the panel splits on pneumothorax."""
    trial, case = study["trial"], study["cases"][0]
    for mark, user in zip(["present", "present", "absent", "absent", "uncertain"], study["panel"], strict=True):
        answer(mine(user, kind="reference", case=case)[0], user,
               marks={f: "absent" for f in trial.findings} | {"pneumothorax": mark})
    queue = selectors.adjudication_queue(access=access_to(user=study["adjudicator"], trial=trial))
    assert len(queue) == 1
    return queue[0]["key"]


def test_the_adjudicator_sees_every_image_of_the_disputed_study(study, client):
    trial, adjudicator = study["trial"], study["adjudicator"]
    key = _dispute(study)
    client.force_login(adjudicator)
    view = client.get(f"/api/trials/{trial.code}/scoring/adjudication/{key}/").json()
    assert AdjudicationViewSerializer(data=view).is_valid()
    assert [(i["position"], i["view_position"]) for i in view["images"]] == [(1, "PA"), (2, "LL")]
    assert view["images"][1]["display_url"] == f"/t/{trial.code}/adjudicate/{key}/2/display.png"
    assert not _leaks(json.dumps(view), _forbidden(study))
    page = client.get(f"/t/{trial.code}/adjudicate/{key}/").content.decode()
    block = re.search(r'<script id="item-images" type="application/json">(.*?)</script>', page, re.S)
    assert block and json.loads(block.group(1)) == view["images"]
    urls = [f"/t/{trial.code}/adjudicate/{key}/2/{kind}.png" for kind in ("display", "values")]
    assert all(client.get(url).status_code == 200 for url in urls)
    assert _body(client.get(urls[0])) == study["lateral"].display_image.open("rb").read()
    assert client.get(f"/t/{trial.code}/adjudicate/{key}/3/display.png").status_code == 403
    for user in study["panel"][:2]:  # a panel expert is no adjudicator
        client.force_login(user)
        assert all(client.get(url).status_code == 403 for url in urls)
