"""A real PACS in front of the trial: a modality sends chest films to Orthanc by C-STORE, and Orthanc forwards them to
our DICOM listener (its modality "cxr"), as a hospital's PACS does. What the trial decides reaches Orthanc as the
outcome of its store: a film enrolled or screened out by the trial's rules is a success; a refusal (not a chest
radiograph, the trial paused, an unknown caller) is a failure that Orthanc reports with the DIMSE status.
The listener runs in a thread of the test process on the test database (hence transaction=True); Orthanc runs as a
separate program (tests/pacs.py)."""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests
from django.conf import settings
from pydicom.uid import CTImageStorage

from tests.live import LiveTrial, image, open_trial
from tests.pacs import (  # noqa: F401  (orthanc: the fixture)
    AE_TITLE,
    DICOMWEB_PLUGIN,
    LISTENER_AE,
    MODALITY_AE,
    Answer,
    Orthanc,
    free_port,
    orthanc,
    orthanc_process,
    send_from_modality,
)
from trial import listener, services
from trial.models import Case, ScreeningEntry

pytestmark = [pytest.mark.django_db(transaction=True)]

COMPOSE_CONFIG = Path(__file__).resolve().parents[2] / "docker" / "orthanc" / "orthanc.json"
AUTOROUTE = COMPOSE_CONFIG.with_name("autoroute.lua")


@dataclass
class Loop:
    live: LiveTrial
    pacs: Orthanc


@pytest.fixture
def trial_listener(investigator, make_user, _media):
    """An open trial whose site takes films from Orthanc's AE title, and our listener: (the trial, its port)."""
    live = open_trial(investigator=investigator, make_user=make_user, code="pacs")
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=[AE_TITLE])
    port = free_port()
    server = listener.serve(host="127.0.0.1", port=port, block=False)
    try:
        yield live, port
    finally:
        server.shutdown()


@pytest.fixture
def loop(orthanc, trial_listener):
    """The trial and Orthanc with our listener as its modality cxr."""
    live, port = trial_listener
    return Loop(live, orthanc(listener_port=port))


def _sop_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def _through_the_pacs(pacs: Orthanc, *films: bytes, as_job: bool = False) -> Answer:
    """The modality sends `films` to Orthanc, which takes them all; then Orthanc forwards them to the trial."""
    assert send_from_modality(pacs, *films) == [0x0000] * len(films)
    ids = [pacs.instance_id(_sop_uid(data)) for data in films]
    assert None not in ids
    return pacs.forward_to("cxr", ids, as_job=as_job)


def test_films_from_the_modality_reach_the_trial_through_orthanc(loop):
    films = [image(n) for n in (11, 12, 13)]
    answer = _through_the_pacs(loop.pacs, *films)
    assert answer.ok, answer.details
    assert (answer.body["InstancesCount"], answer.body["FailedInstancesCount"]) == (3, 0)
    assert answer.body["RemoteAet"] == settings.CXR_DICOM_AE_TITLE
    cases = list(Case.objects.filter(trial=loop.live.trial).order_by("code"))
    assert len(cases) == 3  # each film of the test corpus is a study of its own
    for case in cases:
        assert case.site == loop.live.sites[0] and case.enrolled_by is None
        assert case.reads.count() == 2  # routed at arrival, one reader of each arm
        entry = ScreeningEntry.objects.get(case=case)
        assert (entry.source, entry.outcome) == ("dicom", "enrolled")
    # the PACS keeps the originals (with their identifiers); the trial keeps de-identified copies
    tags = loop.pacs.instance_tags(loop.pacs.instance_id(_sop_uid(films[0])))
    assert tags["SOPInstanceUID"] == _sop_uid(films[0]) and tags["PatientID"] == "MRN-0042-7781"


def test_a_film_screened_out_by_the_trials_rules_is_a_success_for_the_pacs(loop):
    answer = _through_the_pacs(loop.pacs, image(21, PatientAge="012Y"))
    assert answer.ok, answer.details  # nothing more to do: a retry would change nothing
    entry = ScreeningEntry.objects.get(trial=loop.live.trial)
    assert (entry.outcome, entry.code, entry.source) == ("not_enrolled", "under_age", "dicom")
    assert not Case.objects.exists()


def test_a_film_that_is_no_chest_radiograph_fails_in_orthanc_with_its_status(loop):
    answer = _through_the_pacs(loop.pacs, image(22, Modality="CT"))
    assert not answer.ok and answer.http_status == 500
    assert "0xC000" in answer.details  # "Error, cannot understand"
    entry = ScreeningEntry.objects.get(trial=loop.live.trial)
    assert entry.outcome == "not_enrolled" and entry.code.startswith("dicom:") and "radiograph" in entry.reason.lower()
    assert not Case.objects.exists()


def test_a_paused_trial_refuses_and_orthancs_job_fails(loop, investigator):
    services.transition_trial(trial=loop.live.trial, by=investigator, to="paused", reason="Reader training")
    answer = _through_the_pacs(loop.pacs, image(23), as_job=True)
    assert answer.body["State"] == "Failure" and "0x0124" in answer.details  # "Refused, not authorized"
    entry = ScreeningEntry.objects.get(trial=loop.live.trial)
    assert (entry.outcome, entry.code) == ("not_enrolled", "trial_paused") and "Reader training" in entry.reason
    assert not Case.objects.exists()
    # resumed, the PACS's retry of the same job enrols the film
    services.transition_trial(trial=loop.live.trial, by=investigator, to="open")
    assert loop.pacs.post(f"/jobs/{answer.body['ID']}/resubmit", {}).ok
    assert loop.pacs.wait_for_job(answer.body["ID"]).ok
    assert Case.objects.filter(trial=loop.live.trial).count() == 1


def test_an_image_of_another_class_than_cr_or_dx_is_not_taken(loop):
    ct = image(24, SOPClassUID=CTImageStorage, Modality="CT")
    ds = pydicom.dcmread(io.BytesIO(ct))
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    answer = _through_the_pacs(loop.pacs, buffer.getvalue())
    # no presentation context for CT Image Storage: Orthanc 1.10 says "Cannot transcode from … to one of [ ]"
    assert not answer.ok and answer.http_status == 500
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()  # refused before it reached the trial


def test_orthanc_calling_with_an_unknown_ae_title_is_refused_at_association(loop, investigator):
    services.set_site_dicom_senders(site=loop.live.sites[0], by=investigator, ae_titles=["OTHER_PACS"])
    answer = _through_the_pacs(loop.pacs, image(25))
    assert not answer.ok and answer.http_status == 500
    assert "Association Rejected" in answer.details
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()


def test_orthancs_routing_rule_sends_each_film_on_as_it_arrives(orthanc, trial_listener):
    """docker/orthanc/autoroute.lua, the compose PACS's routing rule: no call to Orthanc's REST API."""
    live, port = trial_listener
    pacs = orthanc(listener_port=port, lua_scripts=(AUTOROUTE,))
    # what the trial itself stores in the PACS (a report of record, sent with the listener's AE title) stays there
    assert send_from_modality(pacs, image(30), calling=LISTENER_AE) == [0x0000]
    assert send_from_modality(pacs, image(31), image(32)) == [0x0000, 0x0000]
    deadline = time.monotonic() + 20
    while Case.objects.filter(trial=live.trial).count() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Orthanc runs its Lua callbacks one after the other, in the order of arrival: the first one has run by now
    assert Case.objects.filter(trial=live.trial).count() == 2, pacs.log()[-3000:]
    assert list(ScreeningEntry.objects.values_list("source", "outcome")) == [("dicom", "enrolled")] * 2


def test_the_compose_pacs_configuration_is_read_by_orthanc_as_meant(tmp_path):
    """docker/orthanc/orthanc.json, run by this machine's Orthanc with its ports and folders moved to the test's."""
    http_port, dicom_port = free_port(), free_port()
    text = COMPOSE_CONFIG.read_text()
    for old, new in {'"/var/lib/orthanc/db"': json.dumps(str(tmp_path / "db")),
                     '"HttpPort": 8042': f'"HttpPort": {http_port}', '"DicomPort": 4242': f'"DicomPort": {dicom_port}',
                     '"/etc/orthanc/autoroute.lua"': json.dumps(str(AUTOROUTE))}.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "orthanc.json").write_text(text)
    # the image enables the DICOMweb plugin for the DicomWeb section; here it is named
    (tmp_path / "config" / "plugins.json").write_text(json.dumps({"Plugins": [str(DICOMWEB_PLUGIN)]}))
    env = {**os.environ, "CXR_ORTHANC_PASSWORD": "pacs-password-1", "CXR_ORTHANC_STOW_TOKEN": "token-1",
           "CXR_STOW_URL": "https://trial.example.org/dicomweb/"}
    with orthanc_process(tmp_path, http_port=http_port, dicom_port=dicom_port, ae_title=AE_TITLE, env=env,
                         auth=("cxr", "pacs-password-1")) as pacs:
        assert requests.get(pacs.url + "/system", timeout=5).status_code == 401  # no password, no answer
        system = pacs.get("/system")
        assert (system["DicomAet"], system["DicomPort"]) == ("ORTHANC", dicom_port)
        modalities = pacs.get("/modalities?expand")
        assert (modalities["cxr"]["AET"], modalities["cxr"]["Host"], modalities["cxr"]["Port"]) == (
            settings.CXR_DICOM_AE_TITLE, "dicom", 11112)  # the compose service dicom
        assert modalities["modality"]["AET"] == MODALITY_AE
        assert pacs.get("/dicom-web/servers?expand")["cxr"]["Url"] == "https://trial.example.org/dicomweb/"
        # (and it runs autoroute.lua: Orthanc does not start with a script it cannot find or run)
