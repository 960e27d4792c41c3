"""Validate, de-identify and render one uploaded chest radiograph (DICOM); pure Python, no Django.

validate: read_radiograph and its refusals (DicomRejection, REJECTION_CODES); profile: the PS3.15 Basic
Profile as data; deidentification: applying it (deidentify, dicom_bytes); render: the display and values
images; attributes: tolerant attribute reads and image_summary.
"""

from .attributes import image_summary
from .deidentification import DeidRecord, deidentify, dicom_bytes
from .profile import BASIC_PROFILE, BEYOND_PROFILE
from .render import RenderedImage, ValuesImage, render_display, render_values
from .validate import REJECTION_CODES, DicomRejection, read_radiograph

__all__ = [
    "BASIC_PROFILE",
    "BEYOND_PROFILE",
    "REJECTION_CODES",
    "DeidRecord",
    "DicomRejection",
    "RenderedImage",
    "ValuesImage",
    "deidentify",
    "dicom_bytes",
    "image_summary",
    "read_radiograph",
    "render_display",
    "render_values",
]
