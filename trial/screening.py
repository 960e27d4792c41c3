"""The codes of the screening log, and their words; no Django.

A not-enrolled arrival is counted under exactly one code: an eligibility rule (trial.dicom.eligibility's
EXCLUSION_CODES), a refusal of the image itself ("dicom:<code>", trial.dicom.REJECTION_CODES), or the state of the
trial or its site when the image arrived (STATE_CODES below).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .dicom import EXCLUSION_CODES, REJECTION_CODES

STATE_CODES: Final[Mapping[str, str]] = MappingProxyType({
    "trial_paused": "The trial's enrolment is paused",
    "trial_closed": "The trial is closed to enrolment",
    "site_paused": "The site's enrolment is paused",
    "site_closed": "The site is closed to enrolment",
    "target_reached": "The target sample size is reached",
    "duplicate": "The same image is already enrolled",
})


def label(code: str) -> str:
    """The words for a screening-log code, for the log, the flow and the dashboards."""
    if code.startswith("dicom:"):
        return REJECTION_CODES.get(code.removeprefix("dicom:"), code)
    return STATE_CODES.get(code) or EXCLUSION_CODES.get(code, code)
