"""The report of record as a FHIR R4 DiagnosticReport, for the hospital's FHIR server.

FHIR version. fhir.resources 8 puts R5 (5.0.0) at its top level and R4B (4.3.0) and STU3 in subpackages; it has no
R4 (4.0.1). Most hospital servers speak R4, and R4B's DiagnosticReport is R4's: the same elements with the same
types and cardinalities and the same status codes (R4B changed other resources: medication definition, evidence,
subscriptions). R5's is not: it renames imagingStudy to study and adds note, supportingInfo and composition. So we
build with fhir.resources.R4B, and nothing R4B-only appears in the JSON (no fhirVersion, no profile), which an R4
server therefore reads as R4. tests/trial/test_hospital_messages.py pins the element list against R4's.

Choices, each as FHIR R4 or HL7's registry has it:

- code: LOINC 30745-4 "XR Chest Views", the chest radiograph report with the number of views unspecified (its
  portable sibling 30746-2 is what US Core's chest X-ray example uses). 36643-5 "XR Chest 2 Views" would claim a
  PA and a lateral film, and a trial case is often a single frontal film; 18748-4 "Diagnostic imaging study" is the
  document type of any imaging report and says nothing of chest radiography (the SR's title keeps 18748-4, as
  TID 2000 wants; category says "radiology" here).
- subject: a logical reference by identifier (Patient.identifier = the hospital's patient ID, type MR), since we do
  not know the server's Patient resource ids.
- identifiers: this version's business identifier (identifier_system, "<report_id>/v<version>"), and the SR's SOP
  Instance UID (urn:dicom:uid, urn:oid:<uid>), so the DICOM and FHIR copies can be matched.
- basedOn: the order, as a ServiceRequest identified by the accession number (identifier type v2-0203 ACSN), and
  imagingStudy: the original study by its Study Instance UID (urn:dicom:uid), both as R4's ImagingStudy page says
  to identify them.
- presentedForm: the full text, FINDINGS and IMPRESSION, as text/plain; charset=utf-8, with its size and SHA-1.
- amendments: status "amended" (R4: "subsequent to being final, the report has been modified") and the standard
  extension http://hl7.org/fhir/StructureDefinition/diagnosticReport-replaces (R4 core extension registry, context
  DiagnosticReport, valueReference(DiagnosticReport): "the report replaces the target resource"). Its reference
  identifies the earlier version by that version's SR UID, which is one of the earlier resource's identifiers; no
  project extension is needed. DiagnosticReport has no replaces element of its own in R4 (basedOn points at
  orders, not at reports).
"""

import base64
import hashlib

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from .report import OutboundReport, person_display

LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service sections
DICOM_UID = "urn:dicom:uid"
REPLACES = "http://hl7.org/fhir/StructureDefinition/diagnosticReport-replaces"

REPORT_CODE = {"system": LOINC, "code": "30745-4", "display": "XR Chest Views"}
TEXT_PLAIN = "text/plain; charset=utf-8"


def build_diagnostic_report(
    report: OutboundReport,
    *,
    identifier_system: str,
    patient_identifier_system: str = "",
    accession_identifier_system: str = "",
) -> DiagnosticReport:
    """The report as an R4 DiagnosticReport (fhir.resources.R4B model, see the module docstring).

    identifier_system: the URI under which the platform issues report identifiers. The two optional systems are the
    hospital's assigning authorities for patient IDs and accession numbers, where the site has told us them; without
    them the identifiers carry only their type and value.
    """
    if not identifier_system:
        raise ValueError("identifier_system is required: it makes the report identifier unique.")
    text = report.full_text.encode("utf-8")
    patient = _identifier("MR", "Medical record number", report.patient.id, patient_identifier_system)
    resource = {
        "resourceType": "DiagnosticReport",
        "identifier": [
            {"use": "official", "system": identifier_system, "value": version_identifier(report, report.version)},
            sr_identifier(report.sr_sop_instance_uid),
        ],
        "status": "amended" if report.is_amendment else "final",
        "category": [
            {
                "coding": [
                    {"system": V2_0074, "code": "RAD", "display": "Radiology"},
                    {"system": LOINC, "code": "LP29684-5", "display": "Radiology"},
                ]
            }
        ],
        "code": {"coding": [REPORT_CODE], "text": "Chest X-ray report"},
        "subject": _by_identifier("Patient", patient, display=person_display(report.patient.name)),
        "issued": report.signed_at,
        "performer": [{"type": "Organization", "display": report.institution}],
        "resultsInterpreter": [{"type": "Practitioner", "display": person_display(report.observer_name)}],
        "imagingStudy": [_by_identifier("ImagingStudy", study_identifier(report.study_instance_uid))],
        "conclusion": report.impression.strip(),
        "presentedForm": [
            {
                "contentType": TEXT_PLAIN,
                "data": base64.b64encode(text).decode("ascii"),
                "size": len(text),
                # Attachment.hash is SHA-1 in FHIR R4: a check of integrity, not of authenticity.
                "hash": base64.b64encode(hashlib.sha1(text, usedforsecurity=False).digest()).decode("ascii"),
                "title": f"Report of record, version {report.version}",
                "creation": report.signed_at,
            }
        ],
    }
    if report.accession_number:
        accession = _identifier("ACSN", "Accession ID", report.accession_number, accession_identifier_system)
        resource["basedOn"] = [_by_identifier("ServiceRequest", accession)]
    if report.is_amendment:
        resource["extension"] = [
            {
                "url": REPLACES,
                "valueReference": _by_identifier(
                    "DiagnosticReport",
                    sr_identifier(report.replaces_sr_sop_instance_uid),
                    display=f"{report.report_id}, the version this one amends",
                ),
            }
        ]
    return DiagnosticReport.model_validate(resource)


def diagnostic_report_json(
    report: OutboundReport,
    *,
    identifier_system: str,
    patient_identifier_system: str = "",
    accession_identifier_system: str = "",
) -> str:
    """The DiagnosticReport as FHIR JSON (no nulls, FHIR element names), ready to POST or PUT."""
    return build_diagnostic_report(
        report,
        identifier_system=identifier_system,
        patient_identifier_system=patient_identifier_system,
        accession_identifier_system=accession_identifier_system,
    ).model_dump_json()


def version_identifier(report: OutboundReport, version: int) -> str:
    return f"{report.report_id}/v{version}"


def sr_identifier(sop_instance_uid: str) -> dict:
    return {"system": DICOM_UID, "value": f"urn:oid:{sop_instance_uid}"}


def study_identifier(study_instance_uid: str) -> dict:
    return {"system": DICOM_UID, "value": f"urn:oid:{study_instance_uid}"}


def _identifier(type_code: str, type_display: str, value: str, system: str) -> dict:
    identifier: dict = {"type": {"coding": [{"system": V2_0203, "code": type_code, "display": type_display}]}}
    if system:
        identifier["system"] = system
    identifier["value"] = value
    return identifier


def _by_identifier(resource_type: str, identifier: dict, *, display: str = "") -> dict:
    reference: dict = {"type": resource_type, "identifier": identifier}
    if display:
        reference["display"] = display
    return reference
