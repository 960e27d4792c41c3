"""What one outbound report of record carries back to the hospital; plain data, shared by the SR and FHIR builders.

The outbox fills these from the database; the builders in sr.py and fhir.py turn one into a message and never look
anything up. Identity fields (patient, accession, original UIDs) come from the investigator-only key: they are PHI
and leave the platform only inside these messages, addressed to the hospital the images came from.
"""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ImageRef:
    """One original image the report is about (UIDs from the hospital, investigator-only key)."""

    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Patient:
    """The patient as the hospital's header had it (empty strings where the header had nothing)."""

    id: str
    name: str = ""  # DICOM PN, e.g. "Doe^Jane"
    birth_date: str = ""  # DICOM DA "YYYYMMDD" or ""
    sex: str = ""  # "M", "F", "O" or ""


@dataclass(frozen=True)
class OutboundReport:
    """One released version of a case's report of record, with everything both messages need.

    A retry must re-send the same message, so every UID is chosen by the caller and stored; the builders derive
    every other value (dates included) from these fields and never from the clock.
    """

    patient: Patient
    accession_number: str
    study_instance_uid: str  # the ORIGINAL study: the SR is filed next to the images
    images: tuple[ImageRef, ...]  # >= 1 original image of that study
    findings: str
    impression: str
    observer_name: str  # the signing radiologist (the verifying observer), display name or DICOM PN
    signed_at: datetime  # timezone-aware
    institution: str  # the site's name
    version: int  # 1: first release; 2, 3...: amendments
    sr_series_instance_uid: str
    sr_sop_instance_uid: str
    report_id: str  # stable per case report across versions (e.g. "DEMO-C0007"), the FHIR business identifier
    replaces_sr_sop_instance_uid: str = ""  # the SR this version amends ("" for version 1)
    replaces_sr_series_instance_uid: str = ""
    manufacturer: str = "CXR-Trial"

    def __post_init__(self) -> None:
        # Refuse here, once, what neither message can express, so the outbox learns at construction and not on send.
        if self.version < 1:
            raise ValueError(f"version must be 1 or more, not {self.version}.")
        if not self.images:
            raise ValueError("An outbound report needs at least one original image to refer to.")
        if self.signed_at.tzinfo is None or self.signed_at.utcoffset() is None:
            raise ValueError("signed_at must be timezone-aware.")
        if not self.patient.id:
            raise ValueError("The patient ID is required: the hospital files the report by it.")
        if not self.impression.strip():
            raise ValueError("An impression is required.")
        amends = bool(self.replaces_sr_sop_instance_uid or self.replaces_sr_series_instance_uid)
        if self.version == 1 and amends:
            raise ValueError("Version 1 amends nothing: leave replaces_sr_* empty.")
        if self.version > 1 and not (self.replaces_sr_sop_instance_uid and self.replaces_sr_series_instance_uid):
            raise ValueError(
                f"Version {self.version} is an amendment: replaces_sr_sop_instance_uid and "
                "replaces_sr_series_instance_uid must name the SR it amends."
            )
        if self.replaces_sr_sop_instance_uid and self.replaces_sr_sop_instance_uid == self.sr_sop_instance_uid:
            raise ValueError("An amendment needs its own SOP Instance UID, not the one of the SR it amends.")

    @property
    def is_amendment(self) -> bool:
        return self.version > 1

    @property
    def full_text(self) -> str:
        """The report as a reader of plain text sees it: the two sections under their headings."""
        return f"FINDINGS:\n{self.findings.strip()}\n\nIMPRESSION:\n{self.impression.strip()}\n"


def person_display(name: str) -> str:
    """A DICOM PN ("Family^Given^Middle^Prefix^Suffix") as people write it; a name without carets is kept as is."""
    alphabetic = name.split("=", 1)[0]
    if "^" not in alphabetic:
        return alphabetic.strip()
    family, given, middle, prefix, suffix = (alphabetic.split("^") + [""] * 5)[:5]
    return " ".join(part.strip() for part in (prefix, given, middle, family, suffix) if part.strip())
