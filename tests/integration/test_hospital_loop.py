"""Issue 16's loop with a real Orthanc: a modality sends 50 chest studies (30 a frontal film only, 20 a frontal and a
lateral) and a few the trial does not take to Orthanc; Orthanc forwards half by DICOM C-STORE to our listener and half
by DICOMweb STOW-RS to our endpoint. One case per study, every lateral in its study's case, no PHI stored, a
screening-log row for the rest, refusals back to Orthanc as failures. After sign-off Orthanc holds, for each report of
record, a DICOM SR in the original study with the report's text and the original accession number, referencing every
image of the study; a correction arrives as a new SR that references the first; the FHIR DiagnosticReport validates
with fhir.resources (a FHIR endpoint that validates each one it receives)."""
from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
import requests

from core import clock
from tests.dicom_corpus import PHI
from tests.live import committed, image, open_trial
from tests.pacs import AE_TITLE, free_port, orthanc, send_from_modality  # noqa: F401  (orthanc: the fixture)
from tests.trial.test_outbox import FakeFhir, _correct_and_sign, _read, _sign
from trial import listener, services
from trial.models import AuditEvent, Case, CaseImage, Delivery, Release, Role, ScreeningEntry

pytestmark = [pytest.mark.django_db(transaction=True)]

FRONTAL_ONLY, WITH_LATERAL = 30, 20


def _uids(data: bytes) -> dict:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {"StudyInstanceUID": ds.StudyInstanceUID, "SeriesInstanceUID": ds.SeriesInstanceUID,
            "SOPInstanceUID": ds.SOPInstanceUID}


def _studies() -> list[list[bytes]]:
    studies = []
    for i in range(FRONTAL_ONLY + WITH_LATERAL):
        frontal = image(500 + i, AccessionNumber=f"ACC{500 + i}")
        films = [frontal]
        if i >= FRONTAL_ONLY:
            study = _uids(frontal)
            films.append(image(600 + i, ViewPosition="LL", AccessionNumber=f"ACC{500 + i}",
                               StudyInstanceUID=study["StudyInstanceUID"],
                               SeriesInstanceUID=study["SeriesInstanceUID"]))
        studies.append(films)
    return studies


def _sr_in_study(pacs, study_uid: str) -> list[pydicom.Dataset]:
    out = []
    for instance in pacs.instances_in_study(study_uid):
        if pacs.instance_tags(instance).get("Modality") == "SR":
            data = requests.get(f"{pacs.url}/instances/{instance}/file", timeout=10).content
            out.append(pydicom.dcmread(io.BytesIO(data)))
    return out


def _text(ds: pydicom.Dataset) -> str:
    """Every Text Value of the SR's content tree."""
    out = []
    for item in ds.get("ContentSequence", []):
        if "TextValue" in item:
            out.append(str(item.TextValue))
        out.append(_text(item))
    return "\n".join(t for t in out if t)


def test_fifty_studies_through_orthanc_and_their_reports_back(orthanc, investigator, make_user, live_server,  # noqa: F811
                                                              settings, _media):
    settings.CXR_ALLOW_PLAIN_HTTP_DESTINATIONS = True
    live = open_trial(investigator=investigator, make_user=make_user, code="loop", settle_seconds=60,
                      release_policy="standard", require_signoff=True, draft_rule="read_without")
    site = live.sites[0]
    senior = make_user("loop-senior")
    services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    services.set_site_dicom_senders(site=site, by=investigator, ae_titles=[AE_TITLE])
    _, key = services.issue_sender_token(site=site, by=investigator, name="Orthanc")
    port = free_port()
    server = listener.serve(host="127.0.0.1", port=port, block=False)
    fhir = FakeFhir()
    try:
        pacs = orthanc(listener_port=port, stow_url=f"{live_server.url}/dicomweb/", stow_token=key)
        services.set_site_destinations(site=site, by=investigator, pacs_ae_title=AE_TITLE, pacs_host="127.0.0.1",
                                       pacs_port=pacs.dicom_port, fhir_base_url=fhir.url)
        studies = _studies()
        under_age = [image(700 + i, PatientAge="012Y") for i in range(3)]      # screened out by the rules
        lone_laterals = [image(800 + i, ViewPosition="LL") for i in range(2)]  # studies without a frontal film
        not_a_radiograph = image(900, Modality="CT")                          # refused: cannot understand
        films = [f for study in studies for f in study] + under_age + lone_laterals + [not_a_radiograph]
        assert set(send_from_modality(pacs, *films)) == {0x0000}  # the modality's C-STOREs to Orthanc

        # half by C-STORE, half by STOW-RS, study by study, as a PACS forwards them
        for i, study in enumerate(studies):
            ids = pacs.instances_in_study(_uids(study[0])["StudyInstanceUID"])
            assert len(ids) == len(study)
            answer = pacs.forward_to("cxr", ids) if i % 2 == 0 else pacs.stow_to("cxr", ids)
            assert answer.ok, (i, answer.details, pacs.log()[-2000:])
        for film in under_age + lone_laterals:
            answer = pacs.forward_to("cxr", pacs.instances_in_study(_uids(film)["StudyInstanceUID"]))
            assert answer.ok, answer.details  # screened out, or waiting for its frontal film: a success for the PACS
        refused = pacs.forward_to("cxr", pacs.instances_in_study(_uids(not_a_radiograph)["StudyInstanceUID"]))
        assert not refused.ok and "0xc000" in refused.details.lower()

        # one case per study, every lateral in its study's case
        cases = Case.objects.filter(trial=live.trial)
        assert cases.count() == len(studies)
        assert len(set(cases.values_list("study_key", flat=True))) == len(studies)
        joined = CaseImage.objects.filter(trial=live.trial, case__isnull=False)
        assert joined.count() == WITH_LATERAL and set(joined.values_list("view_position", flat=True)) == {"LL"}
        assert sorted(c.images.count() for c in cases) == [0] * FRONTAL_ONLY + [1] * WITH_LATERAL
        assert all(c.view_position == "PA" and c.reads.count() == 2 for c in cases)  # frontal primary, routed
        entries = ScreeningEntry.objects.filter(trial=live.trial)
        enrolled = entries.filter(outcome="enrolled")
        assert enrolled.count() == len(studies) and entries.filter(outcome="added").count() == WITH_LATERAL
        assert set(enrolled.values_list("source", flat=True)) == {"dicom", "stow-rs"}
        assert entries.filter(outcome="not_enrolled", code="under_age").count() == len(under_age)
        assert entries.filter(code__startswith="dicom:").count() == 1  # the CT
        # the lone laterals wait, then are screened out when their studies settle without a frontal film
        assert CaseImage.objects.filter(trial=live.trial, case__isnull=True).count() == len(lone_laterals)
        CaseImage.objects.filter(case__isnull=True).update(received_at=clock.now() - timedelta(seconds=61))
        with committed():
            assert services.settle_studies() == len(lone_laterals)
        assert entries.filter(outcome="not_enrolled", code="view_position").count() == len(lone_laterals)

        # every inbound message in the audit log with its counts and no UID: one event per association and per
        # STOW-RS request (an association's is written by the listener as it ends: waited for)
        by_cstore = [f for i, st in enumerate(studies) if i % 2 == 0 for f in st] + under_age + lone_laterals
        by_stow = [f for i, st in enumerate(studies) if i % 2 == 1 for f in st]
        events = AuditEvent.objects.filter(trial=live.trial, action__in=["dicom.association", "dicomweb.stow"])

        def counted(action: str, key: str) -> int:
            return sum(e.payload[key] for e in events.filter(action=action))

        deadline = time.monotonic() + 10
        while counted("dicom.association", "instances") < len(by_cstore) + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counted("dicom.association", "instances") == len(by_cstore) + 1        # and the CT
        assert counted("dicom.association", "stored") == len(by_cstore)
        assert [e.payload["failures"] for e in events.filter(action="dicom.association", payload__failed=1)] == [
            {"C000": 1}]
        assert counted("dicomweb.stow", "instances") == counted("dicomweb.stow", "stored") == len(by_stow)
        logged = " ".join(str(e.payload) for e in events)
        for film in films:
            assert all(uid not in logged for uid in _uids(film).values())

        # no PHI stored: every stored file is named by its case's code and holds none of the header's identifiers
        media = Path(settings.MEDIA_ROOT)
        for path in media.rglob("*.dcm"):
            raw = path.read_bytes()
            assert PHI["patient_name"].encode() not in raw and PHI["patient_id"].encode() not in raw, path
            assert b"ACC5" not in raw, path

        # every report of record back, each as an SR in its original study (frontal-only cases and cases with a
        # lateral alike)
        first_pair = cases.filter(images__isnull=False).order_by("code").first()
        for case in cases.order_by("code"):
            _sign(_read(case, arms=("standard",))["standard"], senior)
        for case in cases.order_by("code"):
            delivery = Delivery.objects.get(release__case=case, channel=Delivery.Channel.DICOM_SR)
            assert delivery.state == Delivery.State.DELIVERED, delivery.last_error
            identity = case.identity
            (sr,) = _sr_in_study(pacs, identity.study_instance_uid)
            assert sr.AccessionNumber == identity.accession_number and sr.PatientID == identity.patient_id
            assert "standard findings: clear lungs" in _text(sr) and "standard impression" in _text(sr)
            referenced = {item.ReferencedSOPInstanceUID
                          for study in sr.CurrentRequestedProcedureEvidenceSequence
                          for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
            expected = {identity.sop_instance_uid, *case.images.values_list("original_sop_instance_uid", flat=True)}
            assert referenced == expected and len(expected) == 1 + case.images.count()

        # a correction after release: a new SR in the same study, referencing the first
        _correct_and_sign(first_pair, senior, impression="Small right pleural effusion.",
                          reason="Effusion seen on the lateral")
        first, second = Release.objects.filter(case=first_pair).order_by("version")
        reports = {str(ds.SOPInstanceUID): ds for ds in _sr_in_study(pacs, first_pair.identity.study_instance_uid)}
        assert set(reports) == {first.sr_sop_instance_uid, second.sr_sop_instance_uid}
        amended = reports[second.sr_sop_instance_uid]
        assert amended.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
            .ReferencedSOPInstanceUID == first.sr_sop_instance_uid
        assert "Small right pleural effusion." in _text(amended)
        # the FHIR endpoint validated each DiagnosticReport (fhir.resources) and holds final, final, amended
        statuses = [json.loads(r["body"])["status"] for r in fhir.requests]
        assert sorted(statuses) == ["amended"] + ["final"] * len(studies)
    finally:
        fhir.stop()
        server.shutdown()
