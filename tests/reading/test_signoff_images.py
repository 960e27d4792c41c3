"""The senior's sign-off screen shows every image of the report's study (a case is a study): the primary image first,
then the study's other images (a lateral), each described for the viewer with its own windows and served by its
position in the case to the senior who may sign that report (the sign-off page's own check), refused to everyone
else and once the report is signed; staged images (no case yet) never."""
from __future__ import annotations

import json
import re

import pytest
from django.core.exceptions import PermissionDenied

from reading import selectors, services
from reading.models import Read, Report
from tests.live import another_view, arrive, assert_refused_to, case_with_lateral, committed, image, open_trial
from tests.signing import proof
from trial import services as trial_services
from trial.access import access_for
from trial.models import CaseImage, Role

pytestmark = pytest.mark.django_db


def _submit(read: Read) -> Report:
    user = read.reader.user
    with committed():
        services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t")
        return services.submit_report(read_id=read.pk, by=user, findings="Clear lungs.",
                                      impression=f"Impression {read.pk}.", finding_flags={}, tab_id="t")


@pytest.fixture
def world(investigator, make_user):
    """A live trial with sign-off: a case with a lateral and a case without, each with its standard report submitted
    (the standard read opens at once: no draft to wait for), and a senior who reads none of them."""
    live = open_trial(investigator=investigator, make_user=make_user, code="soi", settle_seconds=60,
                      require_signoff=True)
    senior = make_user("soi-senior")
    trial_services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    case, single = case_with_lateral(live.trial, live.sites[0])
    read = Read.objects.select_related("reader__user").get(case=case, arm="standard")
    single_read = Read.objects.select_related("reader__user").get(case=single, arm="standard")
    return {"live": live, "trial": live.trial, "senior": senior, "case": case, "lateral": case.images.get(),
            "read": read, "report": _submit(read), "single": single, "single_report": _submit(single_read),
            "other": Read.objects.select_related("reader__user").get(case=case, arm="assisted")}


def _page(client, trial, report) -> str:
    response = client.get(f"/t/{trial.code}/signoff/{report.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _images(page: str) -> list[dict]:
    match = re.search(r'<script id="study-images" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the sign-off page embeds its study's images"
    return json.loads(match.group(1))


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _urls(trial, report, positions=(1, 2)) -> list[str]:
    return [f"/t/{trial.code}/signoff/{report.pk}/{n}/{kind}.png" for n in positions for kind in ("display", "values")]


def test_the_senior_sees_every_image_of_the_study_primary_first(world, client):
    trial, report, case, lateral = world["trial"], world["report"], world["case"], world["lateral"]
    client.force_login(world["senior"])
    page = _page(client, trial, report)
    images = _images(page)
    assert [(i["position"], i["view_position"]) for i in images] == [(1, "PA"), (2, "LL")]
    base = f"/t/{trial.code}/signoff/{report.pk}"
    assert [(i["display_url"], i["values_url"]) for i in images] == [
        (f"{base}/1/display.png", f"{base}/1/values.png"), (f"{base}/2/display.png", f"{base}/2/values.png")]
    for described, stored in zip(images, (case, lateral), strict=True):
        assert (described["width"], described["height"]) == (stored.display_width, stored.display_height)
        assert described["windows"] == stored.display_windows and stored.display_windows
    # each file is the stored one
    for described, stored in zip(images, (case, lateral), strict=True):
        for kind, field in (("display", stored.display_image), ("values", stored.values_image)):
            response = client.get(described[f"{kind}_url"])
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert _body(response) == field.open("rb").read(), described[f"{kind}_url"]
    assert _body(client.get(images[0]["display_url"])) != _body(client.get(images[1]["display_url"]))
    # the address the page used before a case had more images still serves the primary's display PNG
    assert _body(client.get(f"{base}/image.png")) == case.display_image.open("rb").read()


def test_the_page_shows_the_images_in_the_study_viewer_without_inline_script(world, client):
    client.force_login(world["senior"])
    page = _page(client, world["trial"], world["report"])
    assert 'id="viewer"' in page and "js/signoff.js" in page and "js/study.js" in page
    # every script is a file or a JSON data block: the page runs under a CSP without 'unsafe-inline'
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert " src=" in tag or 'type="application/json"' in tag, tag
    # without script, each image is still there as a plain picture
    noscript = re.search(r"<noscript>(.*?)</noscript>", page, re.S).group(1)
    assert re.findall(r'src="([^"]+)"', noscript) == [i["display_url"] for i in _images(page)]
    # the report and the signature are where they were
    assert 'id="impression"' in page and 'data-testid="signature"' in page


def test_a_case_without_other_images_has_its_primary_alone(world, client):
    trial, report = world["trial"], world["single_report"]
    client.force_login(world["senior"])
    images = _images(_page(client, trial, report))
    assert [i["position"] for i in images] == [1]
    assert client.get(f"/t/{trial.code}/signoff/{report.pk}/1/display.png").status_code == 200
    assert client.get(f"/t/{trial.code}/signoff/{report.pk}/2/display.png").status_code == 403


def test_every_image_is_refused_to_anyone_but_a_senior_who_may_sign_the_report(world, client, investigator,
                                                                                make_user):
    trial, report, read, other = world["trial"], world["report"], world["read"], world["other"]
    urls = _urls(trial, report)
    # the report's own reader, the case's other reader, an expert, the investigator and a stranger
    expert = make_user("soi-expert")
    trial_services.add_member(trial=trial, by=investigator, user=expert, role=Role.EXPERT)
    assert_refused_to(client, (read.reader.user, other.reader.user, expert, investigator, make_user("soi-stranger")),
                      urls)
    # the senior: beyond the study, at position 0, or a kind that is no file of the viewer's: refused
    client.force_login(world["senior"])
    for n, kind in ((3, "display"), (0, "display"), (2, "dicom"), (2, "thumbnail"), (1, "thumbnail")):
        assert client.get(f"/t/{trial.code}/signoff/{report.pk}/{n}/{kind}.png").status_code == 403, (n, kind)
        assert selectors.signoff_image(access=access_for(user=world["senior"], code=trial.code), report_id=report.pk,
                                       position=n, kind=kind) is None
    # another trial's code in the address: the report is not in that trial's queue
    elsewhere = open_trial(investigator=investigator, make_user=make_user, code="soi-b", require_signoff=True)
    trial_services.add_member(trial=elsewhere.trial, by=investigator, user=world["senior"], role=Role.SENIOR)
    assert client.get(f"/t/{elsewhere.trial.code}/signoff/{report.pk}/2/display.png").status_code == 403


def test_a_signed_report_and_a_trial_without_sign_off_show_nothing_more(world, client, investigator):
    trial, report, senior = world["trial"], world["report"], world["senior"]
    client.force_login(senior)
    url = f"/t/{trial.code}/signoff/{report.pk}/2/display.png"
    assert client.get(url).status_code == 200
    trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=False)
    assert client.get(url).status_code == 403  # the page is refused too: the same check
    trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    assert client.get(url).status_code == 200
    with committed():
        services.sign_report(report=report, by=senior, proof=proof(senior))
    assert client.get(url).status_code == 403
    with pytest.raises(PermissionDenied, match="not in your sign-off queue"):
        selectors.signoff_image(access=access_for(user=senior, code=trial.code), report_id=report.pk, position=2,
                                kind="display")
    assert client.get(f"/t/{trial.code}/signoff/{report.pk}/").status_code == 403


def test_a_staged_image_is_never_shown(world, client):
    live, trial, report = world["live"], world["trial"], world["report"]
    # a lateral whose study has no frontal image yet waits without a case
    assert arrive(trial, live.sites[0], another_view(4, of=image(5))) is None
    assert CaseImage.objects.filter(case__isnull=True).count() == 1
    # and the report's own lateral, as if it had not joined its case (case None): never shown either
    CaseImage.objects.filter(pk=world["lateral"].pk).update(case=None)
    client.force_login(world["senior"])
    assert [i["position"] for i in _images(_page(client, trial, report))] == [1]
    for n in (2, 3):
        assert client.get(f"/t/{trial.code}/signoff/{report.pk}/{n}/display.png").status_code == 403


def test_an_image_without_its_values_yet_is_shown_from_its_display_png(world, client):
    trial, report = world["trial"], world["report"]
    CaseImage.objects.filter(pk=world["lateral"].pk).update(values_image="", display_windows={})
    client.force_login(world["senior"])
    second = _images(_page(client, trial, report))[1]
    assert second["values_url"] is None and second["windows"] == {}  # the viewer windows the display PNG
    assert client.get(second["display_url"]).status_code == 200
    assert client.get(f"/t/{trial.code}/signoff/{report.pk}/2/values.png").status_code == 403


def test_a_refused_signature_keeps_every_image_on_the_page(world, client):
    """A refusal re-renders the page with what was typed: the study's images are still all there."""
    trial, report = world["trial"], world["report"]
    client.force_login(world["senior"])
    response = client.post(f"/t/{trial.code}/signoff/{report.pk}/", {"action": "sign", "password": "wrong"})
    assert response.status_code == 200
    assert [i["position"] for i in _images(response.content.decode())] == [1, 2]
    assert Report.objects.get(pk=report.pk).signed_at is None
