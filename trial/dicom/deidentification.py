"""Apply the de-identification profile to a radiograph: an allow-list copy, HMAC-derived UIDs, a new file meta;
no Django."""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from .attributes import _text
from .profile import (
    _DEID_METHOD,
    _RETAIN_CHARACTERISTICS_METHOD,
    ITEM_TAGS,
    KEPT_TAGS,
    RETAINED_CHARACTERISTICS,
    Action,
    _tag,
)

_DUMMY_TEXT: Final = "ANONYMIZED"
_DUMMY_BY_VR: Final[Mapping[str, object]] = MappingProxyType({
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
})
_TEXT_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})


@dataclass(frozen=True)
class DeidRecord:
    """Original identifiers the trial keeps privately, to link a case back to the hospital record."""

    accession_number: str
    sop_instance_uid: str
    study_instance_uid: str
    patient_id: str


def deidentify(
    ds: Dataset,
    *,
    case_code: str,
    uid_secret: bytes,
    uid_root: str = "2.25.",
    retain_patient_characteristics: bool = False,
) -> tuple[FileDataset, DeidRecord]:
    """Return a de-identified copy of `ds` (the input is left as it was) and the originals kept aside.

    The copy holds only what profile.KEPT lists (and, inside the sequences kept, what SEQUENCE_ITEMS lists),
    each with the action Table E.1-1 prescribes for it: every other attribute, public or private, at any depth,
    is left behind.  Each UID is replaced by an HMAC of it under `uid_secret` (the same UID and secret always
    give the same new UID, so the files of one study still belong together); the patient is named `case_code`.
    Pixel values are copied unchanged (a Big Endian data set's copy is written in Explicit VR Little Endian).  With
    `retain_patient_characteristics`, sex, age, size and weight are kept and the Retain Patient Characteristics
    Option (113108) is declared.
    """
    _check_case_code(case_code)
    if not uid_secret:
        raise ValueError("uid_secret must not be empty")
    _check_uid_root(uid_root)
    kept = dict(KEPT_TAGS)
    if retain_patient_characteristics:
        kept.update({_tag(k): "K" for k in RETAINED_CHARACTERISTICS})

    record = DeidRecord(
        accession_number=_text(ds, "AccessionNumber"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
    )
    uids = _UidMap(secret=uid_secret, root=uid_root)
    out = FileDataset("", Dataset(), file_meta=FileMetaDataset(), preamble=b"\x00" * 128)
    _copy_kept(ds, out, kept, uids)

    out.PatientName = case_code
    out.PatientID = case_code
    out.PatientIdentityRemoved = "YES"
    methods = [_DEID_METHOD]
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if retain_patient_characteristics:
        methods.append(_RETAIN_CHARACTERISTICS_METHOD)
        codes.append(("113108", "Retain Patient Characteristics Option"))
    out.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
    out.DeidentificationMethodCodeSequence = Sequence([_code_item(v, m) for v, m in codes])
    out.LongitudinalTemporalInformationModified = "REMOVED"

    if "SOPClassUID" not in out or "SOPInstanceUID" not in out:
        raise ValueError("deidentify expects a dataset accepted by read_radiograph (SOP Class/Instance UID missing)")
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if _big_endian(ds, tsyntax):
        # Explicit VR Big Endian is retired (PS3.5 A.3) and some viewers no longer read it: the copy is stored in
        # Explicit VR Little Endian, its byte-ordered binary values turned round.
        _to_little_endian(out, ds)
        tsyntax = ExplicitVRLittleEndian
    out.file_meta = _file_meta(out, tsyntax or ExplicitVRLittleEndian)
    return out, record


def _check_case_code(case_code: str) -> None:
    # It becomes Patient ID (LO, 64 characters) and Patient's Name; a backslash would split it.
    if not case_code or len(case_code) > 64 or "\\" in case_code or not case_code.isprintable():
        raise ValueError(f"case_code must be 1–64 printable characters without a backslash: {case_code!r}")


def _check_uid_root(root: str) -> None:
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.", root) or len(root) > 40:
        raise ValueError(f"uid_root must be a UID prefix ending with '.', at most 40 characters: {root!r}")


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


class _UidMap:
    """Old UID → new UID under one secret: HMAC-SHA-256, so the mapping cannot be recomputed
    (or reversed by trying candidate UIDs) without the trial's secret."""

    def __init__(self, *, secret: bytes, root: str) -> None:
        self._secret = secret
        self._root = root
        self._seen: dict[str, str] = {}

    def __call__(self, original: str) -> str:
        original = original.strip().rstrip("\x00")
        if not original:
            return original
        new = self._seen.get(original)
        if new is None:
            digest = hmac.new(self._secret, original.encode("ascii", "replace"), hashlib.sha256).digest()
            if self._root == "2.25.":
                # A UUID (RFC 9562 version 8: application-defined) as 2.25.<integer>, per PS3.5 B.2.
                n = int.from_bytes(digest[:16], "big")
                n = (n & ~(0xF << 76)) | (0x8 << 76)
                n = (n & ~(0x3 << 62)) | (0x2 << 62)
                new = f"2.25.{n}"
            else:
                new = self._root + str(int.from_bytes(digest, "big"))[: 64 - len(self._root)]
            self._seen[original] = new
        return new


def _copy_kept(src: Dataset, dst: Dataset, kept: Mapping[BaseTag, Action], uids: _UidMap) -> None:
    """Copy into `dst` what `kept` names, and nothing else: an allow-list, so that what no one thought of
    (a new attribute, a private block, a sequence nested somewhere) stays behind."""
    for tag, action in kept.items():
        if tag not in src:
            continue
        try:
            elem = src[tag]
            if _unusable(elem):
                continue
            _copy_element(elem, dst, action, uids)
        except Exception:
            continue  # a value pydicom cannot read or write is one we cannot vouch for: drop it


def _copy_element(elem: DataElement, dst: Dataset, action: Action, uids: _UidMap) -> None:
    tag, vr = elem.tag, elem.VR
    if action == "X":
        return
    if action == "Z":
        dst.add(DataElement(tag, vr, Sequence() if vr == "SQ" else empty_value_for_VR(vr)))
    elif action == "D":
        dst.add(DataElement(tag, vr, _dummy(elem, uids)))
    elif action == "U":
        dst.add(DataElement(tag, vr, _map_uids(elem.value, uids)))
    elif vr == "SQ":
        item_kept = dict.fromkeys(ITEM_TAGS.get(tag, ()), "K")
        items = Sequence()
        for item in elem.value:
            clean = Dataset()
            _copy_kept(item, clean, item_kept, uids)
            items.append(clean)
        dst.add(DataElement(tag, vr, items, is_undefined_length=elem.is_undefined_length))
    else:  # K: values are immutable (str, bytes, numbers) except multi-values, copied here
        value = list(elem.value) if isinstance(elem.value, MultiValue) else elem.value
        dst.add(DataElement(tag, vr, value, is_undefined_length=elem.is_undefined_length))


def _unusable(elem: DataElement) -> bool:
    # e.g. a sequence stored as bytes: its content cannot be inspected; or a damaged text value
    return elem.VR not in dictionary_VR(elem.tag).split(" or ") or _looks_corrupt(elem)


# PS3.5 Table 6.2-1 maximum lengths.  A longer value, or control characters in it, mean a
# damaged length field: the value has swallowed the elements that followed it, names included.
_MAX_LENGTH: Final[Mapping[str, int]] = MappingProxyType({
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "PN": 3 * 64 + 2,
    "SH": 16, "TM": 14, "UC": 2**32 - 2, "LT": 10240, "ST": 1024, "UT": 2**32 - 2,
})
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # ESC (\x1b) starts ISO 2022


def _looks_corrupt(elem: DataElement) -> bool:
    limit = _MAX_LENGTH.get(elem.VR)
    if limit is None:
        return False
    values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
    for value in values:
        text = str(value) if value is not None else ""
        if len(text) > limit or _CONTROL_CHARACTERS.search(text):
            return True
    return False


def _map_uids(value: object, uids: _UidMap) -> object:
    if isinstance(value, MultiValue) or isinstance(value, list):
        return [uids(str(v)) for v in value]
    return uids(str(value)) if value else value


def _dummy(elem: DataElement, uids: _UidMap) -> object:
    vr = elem.VR
    if vr == "SQ":
        return Sequence()  # a dummy sequence that says nothing: no items
    if vr == "UI":
        return _map_uids(elem.value, uids)
    if vr in _TEXT_VRS:
        return _DUMMY_TEXT
    return _DUMMY_BY_VR.get(vr, empty_value_for_VR(vr))


def _big_endian(ds: Dataset, tsyntax: str | None) -> bool:
    if tsyntax is not None and UID(tsyntax).is_transfer_syntax:
        return not UID(tsyntax).is_little_endian
    return getattr(ds, "original_encoding", (None, None))[1] is False  # a bare data set as pydicom read it


# Binary VRs whose values are words of this many bytes, stored in the data set's byte order (PS3.5 7.3); OB and UN
# are single bytes, and every other VR pydicom has already turned into numbers or text.
_WORD_BYTES: Final[Mapping[str, int]] = MappingProxyType({"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8})
_PIXEL_DATA: Final = BaseTag(0x7FE00010)


def _to_little_endian(out: Dataset, src: Dataset) -> None:
    """Turn the copy of a big-endian data set little-endian: the pixels from their decoded array (pydicom has undone
    the byte order, including 8-bit pixels stored as big-endian OW words), every other word value swapped."""
    _swap_words(out)
    if _PIXEL_DATA in out:
        arr = src.pixel_array
        out.PixelData = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        out[_PIXEL_DATA].VR = "OW" if arr.dtype.itemsize > 1 else "OB"


def _swap_words(ds: Dataset) -> None:
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
            continue
        size = _WORD_BYTES.get(elem.VR)
        if size is None or elem.tag == _PIXEL_DATA or not isinstance(elem.value, bytes):
            continue
        if len(elem.value) % size:
            del ds[elem.tag]  # not a whole number of words: damaged, and nothing to turn round
            continue
        elem.value = np.frombuffer(elem.value, dtype=f">u{size}").astype(f"<u{size}").tobytes()


def _file_meta(ds: Dataset, tsyntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = tsyntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CXR_TRIAL"
    return meta


def dicom_bytes(ds: FileDataset) -> bytes:
    """Serialise a dataset (e.g. the output of deidentify) as a DICOM Part 10 file."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
