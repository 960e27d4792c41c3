"""The messages that carry a report of record back to the hospital: the DICOM SR for its PACS, the FHIR R4
DiagnosticReport for its FHIR server. Each is read back by an independent parser (pydicom, highdicom, DCMTK's
dsrdump, fhir.resources) and checked field by field."""

import base64
import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import highdicom as hd
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian

from trial.hospital import (
    ImageRef,
    OutboundReport,
    Patient,
    build_diagnostic_report,
    build_sr,
    diagnostic_report_json,
    sr_bytes,
)

CR = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
STUDY = "1.2.826.0.1.3680043.8.498.10"
IMAGES = (
    ImageRef(series_instance_uid=f"{STUDY}.1", sop_class_uid=CR, sop_instance_uid=f"{STUDY}.1.1"),
    ImageRef(series_instance_uid=f"{STUDY}.2", sop_class_uid=DX, sop_instance_uid=f"{STUDY}.2.1"),
)
SR_SERIES = "1.2.826.0.1.3680043.8.498.20"
SIGNED_AT = datetime(2025, 3, 4, 10, 11, 12, tzinfo=timezone(timedelta(hours=8)))
SYSTEM = "https://cxr-trial.example.org/reports"

# Several thousand characters, with accents, umlauts and Chinese, over several lines.
FINDINGS = "\n".join(
    f"{i}. Café-au-lait opacity, Lungenüberblähung ausgeschlossen; 右下肺野见斑片状阴影，边界不清。" for i in range(120)
)
IMPRESSION = "Right lower lobe consolidation, likely pneumonia. Überweisung empfohlen. 建议抗感染治疗后复查。"


def _report(**changes) -> OutboundReport:
    fields = dict(
        patient=Patient(id="MRN-0042", name="Müller^Zoë", birth_date="19700215", sex="F"),
        accession_number="ACC20250304",
        study_instance_uid=STUDY,
        images=IMAGES,
        findings=FINDINGS,
        impression=IMPRESSION,
        observer_name="Roe^Jane^^Dr",
        signed_at=SIGNED_AT,
        institution="Hôpital Saint-Éloi",
        version=1,
        sr_series_instance_uid=SR_SERIES,
        sr_sop_instance_uid=f"{SR_SERIES}.1",
        report_id="DEMO-C0007",
    )
    fields.update(changes)
    return OutboundReport(**fields)


def _amendment(of: OutboundReport, **changes) -> OutboundReport:
    return dataclasses.replace(
        of,
        **{
            "version": of.version + 1,
            "impression": "Right lower lobe consolidation; a small effusion was missed and is now reported.",
            "signed_at": of.signed_at + timedelta(days=1),
            "sr_sop_instance_uid": f"{SR_SERIES}.{of.version + 1}",
            "replaces_sr_sop_instance_uid": of.sr_sop_instance_uid,
            "replaces_sr_series_instance_uid": of.sr_series_instance_uid,
            **changes,
        },
    )


def _read(report: OutboundReport):
    return dcmread(io.BytesIO(sr_bytes(report)))


def _text_items(ds) -> dict[str, str]:
    """Heading code -> (element code, text) for each section of the SR content tree."""
    sections = {}
    for item in ds.ContentSequence:
        if item.ValueType == "CONTAINER":
            (text,) = item.ContentSequence
            assert text.ValueType == "TEXT" and text.RelationshipType == "CONTAINS"
            sections[item.ConceptNameCodeSequence[0].CodeValue] = (
                text.ConceptNameCodeSequence[0].CodeValue,
                text.TextValue,
            )
    return sections


# The DICOM SR


def test_sr_round_trips_as_explicit_vr_little_endian_in_the_original_study():
    ds = _read(_report())

    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == ComprehensiveSRStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.StudyInstanceUID == STUDY
    assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == (SR_SERIES, f"{SR_SERIES}.1")
    assert ds.Modality == "SR"
    assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
        "MRN-0042",
        "Müller^Zoë",
        "19700215",
        "F",
    )
    assert ds.AccessionNumber == "ACC20250304"
    assert ds.ReferencedRequestSequence[0].AccessionNumber == "ACC20250304"
    assert ds.InstitutionName == "Hôpital Saint-Éloi"
    assert ds.SpecificCharacterSet == "ISO_IR 192"


def test_sr_is_verified_complete_and_final_by_the_signing_radiologist():
    ds = _read(_report())

    assert (ds.VerificationFlag, ds.CompletionFlag, ds.PreliminaryFlag) == ("VERIFIED", "COMPLETE", "FINAL")
    (observer,) = ds.VerifyingObserverSequence
    assert str(observer.VerifyingObserverName) == "Roe^Jane^^Dr"
    assert observer.VerifyingOrganization == "Hôpital Saint-Éloi"
    assert observer.VerificationDateTime == "20250304101112.000000+0800"
    assert (ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC) == ("20250304", "101112", "+0800")


def test_sr_content_is_a_tid_2000_report_with_findings_and_impression_sections():
    ds = _read(_report())

    title = ds.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("18748-4", "LN")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2000"
    # Headings from CID 7001 (containers), each holding one report element from CID 7002 (text).
    assert _text_items(ds) == {"59776-5": ("121071", FINDINGS), "19005-8": ("121073", IMPRESSION)}
    observer_name = [item for item in ds.ContentSequence if item.ValueType == "PNAME"]
    assert [str(item.PersonName) for item in observer_name] == ["Roe^Jane^^Dr"]
    assert observer_name[0].RelationshipType == "HAS OBS CONTEXT"


def test_sr_keeps_thousands_of_characters_of_non_ascii_text_exactly():
    assert len(FINDINGS) > 5000
    findings, impression = (text for _, text in _text_items(_read(_report())).values())

    assert findings == FINDINGS
    assert impression == IMPRESSION


def test_sr_lists_every_original_image_as_evidence_of_the_current_procedure():
    sr = hd.sr.srread(sr_bytes(_report()))

    assert sorted(sr.get_evidence(current_procedure_only=True)) == sorted(
        (STUDY, image.series_instance_uid, image.sop_instance_uid, image.sop_class_uid) for image in IMAGES
    )
    assert "PertinentOtherEvidenceSequence" not in sr


def test_highdicom_parses_the_sr_back():
    data = sr_bytes(_report())

    sr = hd.sr.srread(data)
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    again = hd.sr.ComprehensiveSR.from_dataset(dcmread(io.BytesIO(data)))
    texts = hd.sr.utils.find_content_items(again, value_type=hd.sr.ValueTypeValues.TEXT, recursive=True)
    assert [t.TextValue for t in texts if t.ConceptNameCodeSequence[0].CodeValue in ("121071", "121073")] == [
        FINDINGS,
        IMPRESSION,
    ]


def test_an_amendment_names_the_sr_it_replaces():
    first = _report()
    second = _amendment(first)

    assert "PredecessorDocumentsSequence" not in _read(first)
    ds = _read(second)
    (study,) = ds.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    (instance,) = series.ReferencedSOPSequence
    assert study.StudyInstanceUID == STUDY
    assert series.SeriesInstanceUID == first.sr_series_instance_uid
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        ComprehensiveSRStorage,
        first.sr_sop_instance_uid,
    )
    assert ds.SOPInstanceUID == second.sr_sop_instance_uid != first.sr_sop_instance_uid
    assert ds.InstanceNumber == 2


def test_a_retry_sends_the_same_bytes():
    report = _report()

    assert sr_bytes(report) == sr_bytes(dataclasses.replace(report))
    assert sr_bytes(report) != sr_bytes(dataclasses.replace(report, signed_at=SIGNED_AT + timedelta(seconds=1)))


def test_a_display_name_is_kept_whole_as_a_person_name():
    ds = build_sr(_report(observer_name="Dr Jane Roe"))

    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr Jane Roe^"


def test_a_report_without_findings_has_only_the_impression_section():
    ds = _read(_report(findings="  "))

    assert _text_items(ds) == {"19005-8": ("121073", IMPRESSION)}


def test_header_values_the_sr_cannot_carry_are_left_empty():
    ds = _read(_report(patient=Patient(id="MRN-0042", birth_date="19701345", sex="x")))

    assert (ds.PatientBirthDate, ds.PatientSex, str(ds.PatientName)) == ("", "", "")
    assert ds.PatientID == "MRN-0042"


def test_dsrdump_reads_the_sr_and_shows_its_text(tmp_path):
    dsrdump = shutil.which("dsrdump")
    if dsrdump is None:
        pytest.skip("DCMTK's dsrdump is not installed (apt-get install dcmtk): the SR is not checked by DCMTK")
    report = _amendment(_report())
    path = tmp_path / "report.dcm"
    path.write_bytes(sr_bytes(report))

    # +Pl prints long values whole; dsrdump checks the SR IOD's relationship constraints and aborts on errors.
    done = subprocess.run([dsrdump, "+Pl", "+Pt", str(path)], capture_output=True, timeout=60)
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")

    assert done.returncode == 0, err
    assert not [line for line in err.splitlines() if line.startswith(("E:", "F:"))], err
    assert "Comprehensive SR Document" in out
    assert "Verification Flag   : VERIFIED" in out
    assert "Predecessor Docs    : 1" in out
    assert "# TID 2000 (DCMR)" in out
    assert FINDINGS.replace("\n", "\\n") in out  # dsrdump writes a line break as \n
    assert report.impression in out


# The FHIR DiagnosticReport


def _fhir(report: OutboundReport) -> DiagnosticReport:
    return DiagnosticReport.model_validate_json(diagnostic_report_json(report, identifier_system=SYSTEM))


def test_fhir_report_reparses_with_the_fields_a_hospital_needs():
    dr = _fhir(_report())

    assert dr.status == "final"
    assert [(c.system, c.code) for c in dr.code.coding] == [("http://loinc.org", "30745-4")]
    assert [(i.system, i.value) for i in dr.identifier] == [
        (SYSTEM, "DEMO-C0007/v1"),
        ("urn:dicom:uid", f"urn:oid:{SR_SERIES}.1"),
    ]
    assert dr.subject.type == "Patient" and dr.subject.reference is None
    assert dr.subject.identifier.value == "MRN-0042"
    assert dr.subject.identifier.type.coding[0].code == "MR"
    assert dr.subject.display == "Zoë Müller"
    assert dr.issued == SIGNED_AT
    assert [(r.type, r.display) for r in dr.resultsInterpreter] == [("Practitioner", "Dr Jane Roe")]
    assert dr.conclusion == IMPRESSION
    (study,) = dr.imagingStudy
    assert (study.type, study.identifier.system, study.identifier.value) == (
        "ImagingStudy",
        "urn:dicom:uid",
        f"urn:oid:{STUDY}",
    )
    (order,) = dr.basedOn
    assert order.type == "ServiceRequest" and order.identifier.value == "ACC20250304"
    assert [(c.system, c.code) for c in order.identifier.type.coding] == [
        ("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN")
    ]
    assert not dr.extension


def test_fhir_presented_form_is_the_whole_text_in_utf8():
    (form,) = json.loads(diagnostic_report_json(_report(), identifier_system=SYSTEM))["presentedForm"]

    text = base64.b64decode(form["data"], validate=True)  # base64 on the wire, as FHIR's base64Binary is
    assert form["contentType"] == "text/plain; charset=utf-8"
    assert text.decode("utf-8") == f"FINDINGS:\n{FINDINGS}\n\nIMPRESSION:\n{IMPRESSION}\n"
    assert form["size"] == len(text)
    assert base64.b64decode(form["hash"], validate=True) == hashlib.sha1(text).digest()
    assert _fhir(_report()).presentedForm[0].data == text  # and fhir.resources decodes it to the same bytes


def test_fhir_amendment_is_amended_and_points_at_the_version_it_replaces():
    first = _report()
    second = _amendment(first)
    v1, v2 = _fhir(first), _fhir(second)

    assert v2.status == "amended"
    assert (v2.identifier[0].system, v2.identifier[0].value) == (SYSTEM, "DEMO-C0007/v2")
    (replaces,) = v2.extension
    assert replaces.url == "http://hl7.org/fhir/StructureDefinition/diagnosticReport-replaces"
    target = replaces.valueReference
    assert target.type == "DiagnosticReport"
    # The reference resolves to version 1: its identifier is one of version 1's.
    assert (target.identifier.system, target.identifier.value) in [(i.system, i.value) for i in v1.identifier]
    assert (target.identifier.system, target.identifier.value) == ("urn:dicom:uid", f"urn:oid:{SR_SERIES}.1")


def test_fhir_json_has_r4_shape():
    data = json.loads(diagnostic_report_json(_report(), identifier_system=SYSTEM))

    assert data["resourceType"] == "DiagnosticReport"
    assert "imagingStudy" in data and "study" not in data  # R5 renamed the element; an R4 server knows imagingStudy
    assert "meta" not in data and "fhirVersion" not in json.dumps(data)
    assert data["issued"] == "2025-03-04T10:11:12+08:00"


def test_r4b_diagnostic_report_has_exactly_r4s_elements():
    # DiagnosticReport's elements in FHIR R4 (4.0.1), with Resource's and DomainResource's.
    r4 = {
        "id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension",
        "identifier", "basedOn", "status", "category", "code", "subject", "encounter", "effectiveDateTime",
        "effectivePeriod", "issued", "performer", "resultsInterpreter", "specimen", "result", "imagingStudy",
        "media", "conclusion", "conclusionCode", "presentedForm",
    }  # fmt: skip
    elements = {
        field.alias or name
        for name, field in DiagnosticReport.model_fields.items()
        if not name.endswith("__ext") and name not in ("fhir_comments", "resource_type")
    }
    assert elements == r4


def test_a_report_without_accession_number_has_no_order_reference():
    dr = build_diagnostic_report(_report(accession_number=""), identifier_system=SYSTEM)

    assert dr.basedOn is None
    assert "ReferencedRequestSequence" not in build_sr(_report(accession_number=""))


def test_hospital_identifier_systems_are_used_when_known():
    dr = build_diagnostic_report(
        _report(),
        identifier_system=SYSTEM,
        patient_identifier_system="urn:oid:1.2.3.4.5",
        accession_identifier_system="urn:oid:1.2.3.4.6",
    )

    assert dr.subject.identifier.system == "urn:oid:1.2.3.4.5"
    assert dr.basedOn[0].identifier.system == "urn:oid:1.2.3.4.6"


# Refusals: what neither message can express is refused when the report is built, with a message that says why


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "Version 2 is an amendment: replaces_sr_sop_instance_uid"),
        ({"replaces_sr_sop_instance_uid": "1.2.3", "replaces_sr_series_instance_uid": "1.2"}, "Version 1 amends"),
        ({"version": 0}, "version must be 1 or more"),
        ({"images": ()}, "at least one original image"),
        ({"signed_at": SIGNED_AT.replace(tzinfo=None)}, "signed_at must be timezone-aware"),
        ({"impression": "  "}, "An impression is required"),
        ({"patient": Patient(id="")}, "The patient ID is required"),
    ],
)
def test_a_report_neither_message_can_express_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _report(**changes)


def test_an_amendment_cannot_reuse_the_uid_of_the_sr_it_replaces():
    first = _report()

    with pytest.raises(ValueError, match="needs its own SOP Instance UID"):
        _amendment(first, sr_sop_instance_uid=first.sr_sop_instance_uid)


def test_fhir_needs_an_identifier_system():
    with pytest.raises(ValueError, match="identifier_system is required"):
        build_diagnostic_report(_report(), identifier_system="")
