"""Tolerant reads of one attribute's value, and the summary of them that a case stores; no Django."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID


def _value(ds: Dataset, keyword: str) -> object:
    # A value pydicom cannot convert counts as absent: the checks then say what is missing.
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _text(ds: Dataset, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def image_summary(ds: Dataset) -> dict[str, object]:
    """What the case stores about its image, for listings and the trial's data export."""
    tsyntax = UID(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else None
    return {
        "modality": _text(ds, "Modality"),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "bits_stored": int(ds.BitsStored),
        "photometric": _text(ds, "PhotometricInterpretation"),
        "view_position": _text(ds, "ViewPosition"),
        "body_part": _text(ds, "BodyPartExamined"),
        "transfer_syntax": tsyntax.name if tsyntax else "",
        "transfer_syntax_uid": str(tsyntax or ""),
    }
