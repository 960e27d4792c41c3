"""The report of record as a DICOM Structured Report, filed by the hospital's PACS next to the images it is about.

IOD: Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33). The content is text with references to images, which the
Basic Text, Enhanced and Comprehensive SR IODs all allow; highdicom builds only Enhanced, Comprehensive and
Comprehensive 3D. Both Enhanced and Comprehensive SR are in DCMTK's list of storage SOP classes
(dcmAllStorageSOPClassUIDs), which is what Orthanc 1.10's C-STORE SCP accepts with its defaults
(UnknownSopClassAccepted false). We take Comprehensive: it is a superset of Enhanced (it also allows items
referenced by relationship), so a later report that adds coordinates of a finding or by-reference items needs no
change of SOP class.

Content (PS3.16 TID 2000 Basic Diagnostic Imaging Report):

    CONTAINER (18748-4, LN, "Diagnostic Imaging Report")              root, CID 7000, template 2000
      HAS OBS CONTEXT  TID 1001/1002: person observer = the signing radiologist, organization = the site
      CONTAINS CONTAINER (59776-5, LN, "Findings")                    heading, CID 7001
        CONTAINS TEXT (121071, DCM, "Finding")                        report element, CID 7002
      CONTAINS CONTAINER (19005-8, LN, "Impressions")                 heading, CID 7001
        CONTAINS TEXT (121073, DCM, "Impression")                     report element, CID 7002

The headings are containers and the text sits inside them, singular codes from CID 7002. CID 7001 names the
headings with LOINC codes today: (121070, DCM, "Findings") and (121072, DCM, "Impressions") were its older codes
and belong to no context group now (pydicom's copy of PS3.16 lists none for them), so we do not use them.

The document is verified (VerificationFlag VERIFIED, the radiologist in VerifyingObserverSequence at signed_at),
complete and final. When there is an accession number, ReferencedRequestSequence says which order the report
fulfils, so the RIS can close it. The original images are listed as evidence
(CurrentRequestedProcedureEvidenceSequence): we do not keep them, so highdicom gets minimal datasets holding their
UIDs and the hospital's patient module. An amendment names the SR it replaces in PredecessorDocumentsSequence.
"""

import io
from datetime import datetime

import highdicom as hd
from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian
from pydicom.valuerep import DA, DT, TM

from .report import ImageRef, OutboundReport

# Our series among the hospital's: a high number, unlikely to clash with a modality's, so the report lists apart.
SR_SERIES_NUMBER = 999
UTF8 = "ISO_IR 192"  # every text survives: accents, umlauts, Chinese

DOCUMENT_TITLE = codes.LN.DiagnosticImagingReport  # (18748-4, LN), CID 7000
FINDINGS_HEADING = codes.LN.Findings  # (59776-5, LN), CID 7001
FINDING = codes.DCM.Finding  # (121071, DCM), CID 7002
IMPRESSIONS_HEADING = codes.LN.Impressions  # (19005-8, LN), CID 7001
IMPRESSION = codes.DCM.Impression  # (121073, DCM), CID 7002

_LO_MAX = 64  # the longest LO (and PN component group) the standard allows


def build_sr(report: OutboundReport) -> Dataset:
    """The report as a verified Comprehensive SR in the original study; the same report gives the same dataset."""
    signed_at = report.signed_at
    evidence = [_evidence(report, image) for image in report.images]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=_content(report),
        series_instance_uid=report.sr_series_instance_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=report.sr_sop_instance_uid,
        instance_number=report.version,
        manufacturer=_lo(report.manufacturer),
        is_complete=True,
        is_final=True,
        is_verified=True,
        institution_name=_lo(report.institution),
        verifying_observer_name=_person_name(report.observer_name),
        verifying_organization=_lo(report.institution),
        requested_procedures=[_request(report)] if report.accession_number else None,
        previous_versions=[_predecessor(report)] if report.is_amendment else None,
        record_evidence=True,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set=UTF8,
        series_description=_series_description(report),
        content_date=signed_at.date(),
        content_time=signed_at.time().replace(tzinfo=None),
        series_date=signed_at.date(),
        series_time=signed_at.time().replace(tzinfo=None),
    )
    # highdicom stamps the clock here; a retry must send the same bytes, so every date comes from signed_at.
    sr.InstanceCreationDate = DA(signed_at.date())
    sr.InstanceCreationTime = TM(signed_at.time().replace(tzinfo=None))
    sr.VerifyingObserverSequence[0].VerificationDateTime = _dt(signed_at)
    for equipment in sr.ContributingEquipmentSequence:  # highdicom lists itself, "contributed" now
        equipment.ContributionDateTime = _dt(signed_at)
    # The DA and TM values above are local to signed_at's zone; this says which zone that is (PS3.3 C.12.1).
    sr.TimezoneOffsetFromUTC = _utc_offset(signed_at)
    return sr


def sr_bytes(report: OutboundReport) -> bytes:
    """The SR as a DICOM Part 10 file in Explicit VR Little Endian, ready for C-STORE or STOW-RS."""
    buffer = io.BytesIO()
    dcmwrite(buffer, build_sr(report), enforce_file_format=True)
    return buffer.getvalue()


def read_sr(data: bytes) -> Dataset:
    """Read back what sr_bytes wrote (for checks and for the outbox's own logs)."""
    return dcmread(io.BytesIO(data))


def _content(report: OutboundReport) -> hd.sr.ContainerContentItem:
    root = hd.sr.ContainerContentItem(name=DOCUMENT_TITLE, template_id="2000")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=_person_name(report.observer_name), organization_name=_lo(report.institution)
        ),
    )
    items: list[hd.sr.ContentItem] = list(hd.sr.ObservationContext(observer_person_context=observer))
    if report.findings.strip():  # a TEXT item may not be empty; a report without findings just has no section
        items.append(_section(FINDINGS_HEADING, FINDING, report.findings))
    items.append(_section(IMPRESSIONS_HEADING, IMPRESSION, report.impression))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _section(heading: Code, element: Code, text: str) -> hd.sr.ContainerContentItem:
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    section = hd.sr.ContainerContentItem(name=heading, relationship_type=contains)
    section.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.TextContentItem(name=element, value=text.strip(), relationship_type=contains)]
    )
    return section


def _evidence(report: OutboundReport, image: ImageRef) -> Dataset:
    """What highdicom needs of one original image: its UIDs, and (from the first) the hospital's patient module."""
    ds = Dataset()
    ds.SpecificCharacterSet = UTF8
    ds.StudyInstanceUID = report.study_instance_uid
    ds.SeriesInstanceUID = image.series_instance_uid
    ds.SOPClassUID = image.sop_class_uid
    ds.SOPInstanceUID = image.sop_instance_uid
    ds.PatientID = report.patient.id
    ds.PatientName = report.patient.name
    ds.PatientBirthDate = _birth_date(report.patient.birth_date)
    ds.PatientSex = _sex(report.patient.sex)
    ds.AccessionNumber = report.accession_number
    # Type 2 study attributes we do not keep: empty, so the PACS keeps the values its images already gave the study.
    ds.StudyID = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    return ds


def _request(report: OutboundReport) -> Dataset:
    """The order this report fulfils (ReferencedRequestSequence), known to the RIS by its accession number."""
    ds = Dataset()
    ds.StudyInstanceUID = report.study_instance_uid
    ds.AccessionNumber = report.accession_number
    # Type 2: we were given none of these; empty says "unknown" and keeps the item valid.
    ds.ReferencedStudySequence = []
    ds.PlacerOrderNumberImagingServiceRequest = ""
    ds.FillerOrderNumberImagingServiceRequest = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    ds.RequestedProcedureCodeSequence = []
    return ds


def _predecessor(report: OutboundReport) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = report.study_instance_uid
    ds.SeriesInstanceUID = report.replaces_sr_series_instance_uid
    ds.SOPClassUID = ComprehensiveSRStorage  # every version this module writes is one
    ds.SOPInstanceUID = report.replaces_sr_sop_instance_uid
    return ds


def _series_description(report: OutboundReport) -> str:
    if report.is_amendment:
        return _lo(f"Report of record, amended (version {report.version})")
    return "Report of record"


def _person_name(name: str) -> str:
    """A PN value: a DICOM name is kept; a display name ("Dr Jane Roe") becomes the family-name component whole.

    Splitting a display name into family and given names would be a guess (and a wrong one for many names), so a
    name without carets is kept as one component and gets the trailing caret that tells DICOM it is meant so.
    """
    cleaned = " ".join(name.replace("\\", " ").replace("=", " ").split())
    if "^" in cleaned:
        return "^".join(part[:_LO_MAX] for part in cleaned.split("^"))
    return f"{cleaned[:_LO_MAX]}^"


def _lo(value: str) -> str:
    """A value for an LO attribute: one line, no backslash (the value separator), at most 64 characters."""
    return " ".join(value.replace("\\", " ").split())[:_LO_MAX]


def _birth_date(value: str) -> str:
    # The header's value, if it is a real date; a malformed one would make the whole SR invalid, and the PACS
    # matches by patient ID anyway, so it is left empty (Type 2: unknown) rather than refused.
    try:
        return str(DA(value)) if value else ""
    except ValueError:
        return ""


def _sex(value: str) -> str:
    value = value.strip().upper()
    return value if value in {"M", "F", "O"} else ""


def _dt(moment: datetime) -> DT:
    return DT(moment.strftime("%Y%m%d%H%M%S.%f") + _utc_offset(moment))


def _utc_offset(moment: datetime) -> str:
    return moment.strftime("%z")
