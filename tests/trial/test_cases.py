"""Cases from DICOM through the service, the API, the folder command and the pages: accepted files
become de-identified cases; refused files get their reason and leave nothing behind."""
from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.errors import WrongStatus
from tests import dicom_corpus as corpus
from trial import services
from trial.errors import CaseRejected, DuplicateImage, FileTooLarge
from trial.models import Allocation, AuditEvent, Case, CaseIdentity, ScreeningEntry


def _files_under(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()] if Path(root).exists() else []


def _enrol(trial, site, by, data, **kw):
    return services.enrol_case(trial=trial, site=site, by=by, data=data, **kw)


def test_real_cr_film_becomes_a_deidentified_case(enrolling_trial, site, investigator, _media):
    case = _enrol(enrolling_trial, site, investigator, corpus.real_cr_film("RG1_UNCR.dcm"),
                  filename="RG1_UNCR.dcm", clinical_history="  Fever and cough.  ")
    assert case.code == "C0001" and case.modality == "CR" and case.clinical_history == "Fever and cough."
    stored = pydicom.dcmread(io.BytesIO(case.dicom.read()))
    assert stored.PatientID == "C0001" and stored.PatientIdentityRemoved == "YES"
    assert max(case.display_width, case.display_height) <= 2048
    assert case.display_image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert case.identity.original_filename == "RG1_UNCR.dcm"
    assert AuditEvent.objects.filter(action="case.enrolled", object_id=str(case.pk)).exists()


def test_accession_number_is_kept_only_in_the_identity_link(enrolling_trial, site, investigator):
    case = _enrol(enrolling_trial, site, investigator, corpus.radiograph_bytes(seed=1))
    assert CaseIdentity.objects.get(case=case).accession_number == corpus.PHI["accession"]
    assert corpus.PHI["accession"].encode() not in case.dicom.read()


def test_same_image_twice_is_refused_with_a_clear_message(enrolling_trial, site, investigator, _media):
    data = corpus.radiograph_bytes(seed=2)
    _enrol(enrolling_trial, site, investigator, data)
    files_before = sorted(_files_under(_media))
    with pytest.raises(DuplicateImage, match="already enrolled in this trial"):
        _enrol(enrolling_trial, site, investigator, data)
    assert Case.objects.count() == 1
    assert sorted(_files_under(_media)) == files_before


@pytest.mark.parametrize("builder,code", [
    (corpus.text_file, "not_dicom"),
    (corpus.png_file, "not_dicom"),
    (corpus.truncated_in_header, None),
    (corpus.truncated_in_pixel_data, "truncated"),
    (corpus.no_pixel_data, "no_pixel_data"),
    (corpus.ct_modality, "wrong_modality"),
    (corpus.multi_frame, "multi_frame"),
    (corpus.undecodable_syntax, "undecodable"),
    (corpus.burned_in_annotation, "burned_in_annotation"),
])
def test_refused_file_gets_its_reason_and_nothing_is_stored(enrolling_trial, site, investigator, _media,
                                                            builder, code):
    events = AuditEvent.objects.count()
    with pytest.raises(CaseRejected) as refusal:
        _enrol(enrolling_trial, site, investigator, builder())
    if code:
        assert refusal.value.code == code
    assert len(refusal.value.message) > 20  # a sentence, not a code
    assert not Case.objects.exists() and not CaseIdentity.objects.exists()
    # Only the screening log keeps the arrival (no PHI: the refusal code and its sentence), with its audit event.
    entry = ScreeningEntry.objects.get()
    assert entry.outcome == "not_enrolled" and entry.code == f"dicom:{refusal.value.code}" and entry.case is None
    assert list(AuditEvent.objects.filter(id__gt=events).values_list("action", flat=True)) == ["screening.not_enrolled"]
    assert _files_under(_media) == []
    enrolling_trial.refresh_from_db()
    assert enrolling_trial.case_counter == 0


def test_file_over_the_size_limit_is_refused(enrolling_trial, site, investigator, settings, _media):
    settings.CXR_MAX_DICOM_BYTES = 10_000
    with pytest.raises(FileTooLarge, match="the limit is"):
        _enrol(enrolling_trial, site, investigator, corpus.radiograph_bytes(seed=3))
    assert not Case.objects.exists() and _files_under(_media) == []


def test_cases_are_enrolled_only_while_enrolling(trial, site, investigator):
    with pytest.raises(WrongStatus, match="only while the trial is enrolling"):
        _enrol(trial, site, investigator, corpus.radiograph_bytes(seed=4))
    assert not Case.objects.exists()


def test_failure_after_files_were_written_removes_them(enrolling_trial, site, investigator, _media, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("trial.services.audit.record", broken)
    with pytest.raises(RuntimeError):
        _enrol(enrolling_trial, site, investigator, corpus.radiograph_bytes(seed=5))
    assert not Case.objects.exists() and _files_under(_media) == []


def test_case_randomized_trial_allocates_each_case_by_site(investigator):
    trial = services.create_trial(by=investigator, code="cr", title="Case randomized", design="case_randomized")
    site = services.add_site(trial=trial, by=investigator, code="s1", name="S1")
    trial = services.transition_trial(trial=trial, by=investigator, to="enrolling")
    cases = [_enrol(trial, site, investigator, corpus.radiograph_bytes(seed=10 + i, rows=200, columns=180))
             for i in range(4)]
    allocations = Allocation.objects.filter(trial=trial).order_by("position")
    assert [a.case_id for a in allocations] == [c.pk for c in cases]
    assert {a.stratum for a in allocations} == {"s1"}


# ------------------------------------------------------------------------------ API, command, pages


@pytest.fixture
def api(investigator):
    client = APIClient()
    client.force_authenticate(investigator)
    return client


def test_upload_through_the_api(api, enrolling_trial, site):
    upload = io.BytesIO(corpus.radiograph_bytes(seed=20))
    upload.name = "film.dcm"
    r = api.post(f"/api/trials/{enrolling_trial.code}/cases/",
                 {"file": upload, "site": "site-a", "clinical_history": "Dyspnoea"}, format="multipart")
    assert r.status_code == 201, r.content
    assert r.json()["code"] == "C0001" and r.json()["clinical_history"] == "Dyspnoea"
    assert "accession" not in r.content.decode().lower()


def test_refused_upload_through_the_api_says_why(api, enrolling_trial, site):
    upload = io.BytesIO(corpus.ct_modality())
    upload.name = "ct.dcm"
    r = api.post(f"/api/trials/{enrolling_trial.code}/cases/", {"file": upload, "site": "site-a"}, format="multipart")
    assert r.status_code == 400
    assert r.json()["code"] == "wrong_modality" and "CT" in r.json()["detail"]
    assert not Case.objects.exists()


def test_upload_to_an_unknown_site_is_refused(api, enrolling_trial, site):
    upload = io.BytesIO(corpus.radiograph_bytes(seed=21))
    upload.name = "film.dcm"
    r = api.post(f"/api/trials/{enrolling_trial.code}/cases/", {"file": upload, "site": "nowhere"}, format="multipart")
    assert r.status_code == 400 and "No site" in r.content.decode()
    assert not Case.objects.exists()


def test_import_command_enrols_a_folder_and_lists_refusals(enrolling_trial, site, investigator, tmp_path, capsys):
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(corpus.radiograph_bytes(seed=30, rows=300, columns=260))
    (folder / "a.txt").write_text("Chest pain.")
    (folder / "b.dcm").write_bytes(corpus.radiograph_bytes(seed=31, rows=300, columns=260))
    (folder / "c.dcm").write_bytes(corpus.ct_modality())
    call_command("import_cases", enrolling_trial.code, "site-a", str(folder), "--as", investigator.username)
    out = capsys.readouterr().out
    assert "2 enrolled or added to their study's case, 1 rejected, 0 waiting" in out and "of 3 files" in out
    assert "c.dcm" in out
    assert Case.objects.get(identity__original_filename="a.dcm").clinical_history == "Chest pain."


def test_case_pages_show_the_image_to_investigators_only(client, enrolling_trial, site, investigator, outsider):
    case = _enrol(enrolling_trial, site, investigator, corpus.radiograph_bytes(seed=40))
    client.force_login(investigator)
    page = client.get(f"/t/{enrolling_trial.code}/cases/{case.code}/").content.decode()
    assert corpus.PHI["accession"] in page  # the investigator's link to the hospital record
    image = client.get(f"/t/{enrolling_trial.code}/cases/{case.code}/display.png")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert client.get(f"/t/{enrolling_trial.code}/cases/upload/").status_code == 200
    client.force_login(outsider)
    assert client.get(f"/t/{enrolling_trial.code}/cases/{case.code}/display.png").status_code == 403
    assert client.get(f"/t/{enrolling_trial.code}/cases/{case.code}/").status_code == 403


def test_the_viewer_values_image_is_prepared_after_enrolment(enrolling_trial, site, investigator,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        case = _enrol(enrolling_trial, site, investigator, corpus.radiograph_bytes(seed=50))
    case.refresh_from_db()
    assert case.values_image and set(case.display_windows) == {"auto", "file", "lung", "mediastinum", "bone"}
    name = case.values_image.name
    assert services.prepare_viewer_image(case=case).values_image.name == name  # idempotent
