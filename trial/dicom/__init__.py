"""Validate, de-identify and render one uploaded chest radiograph (DICOM); pure Python, no Django.

validate: read_radiograph and its refusals (DicomRejection, REJECTION_CODES), with the limits on what a file may
make us allocate (MAX_PIXELS, MAX_TILES); codestream: the size a compressed codestream declares; profile: PS3.15
Table E.1-1 (table_e1_1, generated from the standard's data) and the allow-list of what a de-identified file keeps;
deidentification: applying it (deidentify, dicom_bytes); render: the display and values images; attributes:
tolerant attribute reads and image_summary.
"""

from .attributes import image_summary
from .deidentification import DeidRecord, deidentify, dicom_bytes
from .eligibility import EXCLUSION_CODES, EligibilityRules, arrival_from_header, decide
from .profile import BASIC_PROFILE, BEYOND_PROFILE, KEPT, SEQUENCE_ITEMS, TABLE_EDITION, table_action
from .render import RenderedImage, ValuesImage, render_display, render_values
from .validate import MAX_PIXELS, MAX_TILES, REJECTION_CODES, DicomRejection, check_pixel_count, read_radiograph

__all__ = [
    "BASIC_PROFILE",
    "BEYOND_PROFILE",
    "EXCLUSION_CODES",
    "KEPT",
    "MAX_PIXELS",
    "MAX_TILES",
    "REJECTION_CODES",
    "SEQUENCE_ITEMS",
    "TABLE_EDITION",
    "DeidRecord",
    "DicomRejection",
    "EligibilityRules",
    "RenderedImage",
    "ValuesImage",
    "arrival_from_header",
    "check_pixel_count",
    "decide",
    "deidentify",
    "dicom_bytes",
    "image_summary",
    "read_radiograph",
    "render_display",
    "render_values",
    "table_action",
]
