"""Messages that carry a released report of record back to the hospital; pure Python, no Django.

report: the plain data the outbox fills (OutboundReport, Patient, ImageRef); sr: the DICOM Comprehensive SR for the
PACS (build_sr, sr_bytes); fhir: the FHIR R4 DiagnosticReport (build_diagnostic_report, diagnostic_report_json).
Sending them (C-STORE, STOW-RS, HTTP), retries and bookkeeping belong to the outbox, not here.
"""

from .fhir import build_diagnostic_report, diagnostic_report_json
from .report import ImageRef, OutboundReport, Patient
from .sr import build_sr, read_sr, sr_bytes

__all__ = [
    "ImageRef",
    "OutboundReport",
    "Patient",
    "build_diagnostic_report",
    "build_sr",
    "diagnostic_report_json",
    "read_sr",
    "sr_bytes",
]
