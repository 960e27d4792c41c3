"""Validate, de-identify and render one uploaded chest radiograph (DICOM); pure Python, no Django."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import numpy as np
import pydicom
from PIL import Image
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

__all__ = [
    "BASIC_PROFILE",
    "BEYOND_PROFILE",
    "REJECTION_CODES",
    "DeidRecord",
    "DicomRejection",
    "RenderedImage",
    "deidentify",
    "dicom_bytes",
    "image_summary",
    "read_radiograph",
    "render_display",
]


# ---------------------------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------------------------

# Stable slugs: they are stored with a refused upload and counted in the trial's screening log,
# so a code is never renamed; the sentence that goes with each refusal is built where it is raised.
REJECTION_CODES: Final[Mapping[str, str]] = MappingProxyType({
    "too_large": "File larger than the upload limit",
    "not_dicom": "Not a DICOM file",
    "truncated": "File cut short",
    "missing_attribute": "Required DICOM attribute missing",
    "invalid_attribute": "Required DICOM attribute unreadable",
    "wrong_modality": "Not a radiograph (modality other than CR or DX)",
    "not_chest": "Body part other than the chest",
    "multi_frame": "More than one frame",
    "unsupported_photometric": "Not a greyscale (MONOCHROME1/2) image",
    "unsupported_pixel_format": "Bit depth not supported",
    "burned_in_annotation": "Burned-in annotation",
    "no_pixel_data": "No image in the file",
    "not_image_size": "Image data does not match the declared size",
    "undecodable": "Image data cannot be decoded",
})


class DicomRejection(Exception):
    """An upload refused with a stable `code` and a `reason` written for the radiographer."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in REJECTION_CODES:
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# ---------------------------------------------------------------------------------------------
# Reading and validation
# ---------------------------------------------------------------------------------------------

_ACCEPTED_MODALITIES: Final = ("CR", "DX")
_MONOCHROME: Final = ("MONOCHROME1", "MONOCHROME2")

# Defined terms of Body Part Examined (PS3.16 Annex L) that are clearly not a chest film.  Local or
# free-text values are not refused: a chest labelled "TORAX" or "BRUSTKORB" must still get in,
# and the reader sees the image anyway.
_NOT_CHEST_BODY_PARTS: Final = frozenset({
    "ABDOMEN", "ANKLE", "ARM", "BRAIN", "CSPINE", "CLAVICLE", "COCCYX", "ELBOW", "EXTREMITY",
    "FOOT", "FOREARM", "HAND", "HEAD", "HIP", "JAW", "KNEE", "LEG", "LSPINE", "NECK", "PELVIS",
    "SHOULDER", "SKULL", "SSPINE", "TSPINE", "WRIST", "FINGER", "TOE", "HEEL", "FEMUR", "TIBIA",
    "HUMERUS", "SACRUM", "SPINE", "BREAST", "FACE", "SINUS", "ORBIT", "MANDIBLE", "KIDNEY",
})

_REQUIRED_IMAGE_ATTRIBUTES: Final = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation",
    "SamplesPerPixel", "PixelRepresentation",
)

# Signatures of files people upload by mistake, so the refusal can say what the file is.
_OTHER_FORMATS: Final = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
)

# Decoder warnings that describe a harmless oddity of the encoding, not lost pixels; every other
# warning raised while decoding refuses the file (pydicom and the codecs sometimes only warn
# when a codestream is cut short or the header contradicts it).
_BENIGN_DECODE_WARNINGS: Final = (
    "Bits Stored value",  # J2K precision differs from BitsStored: values still fit
    "JP2 file format header",  # JP2 wrapper around the codestream: decodes the same
    "non-conformant padding",  # RLE segment padded beyond the frame: surplus is dropped
)


def read_radiograph(
    data: bytes | bytearray | memoryview | str | os.PathLike[str], *, max_bytes: int | None = None
) -> FileDataset:
    """Parse and validate one chest radiograph; refuse with a DicomRejection, else return it decoded.

    `data` is the file's content or its path.  The returned dataset's pixel array is already
    decoded (pydicom caches it), so rendering it does not decode a second time.
    """
    raw = _load(data, max_bytes)
    has_preamble = len(raw) >= 132 and raw[128:132] == b"DICM"
    if not has_preamble:
        _refuse_non_dicom(raw)
    ds = _parse(raw, has_preamble)
    _drop_unreadable(ds)
    _check_header(ds, has_preamble)
    _check_pixel_data(ds)
    _decode(ds)
    _check_display_attributes(ds)
    return ds


def _load(data: bytes | bytearray | memoryview | str | os.PathLike[str], max_bytes: int | None) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = len(data)
        _check_size(size, max_bytes)
        raw = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        size = os.stat(data).st_size
        _check_size(size, max_bytes)  # before reading: a 5 GB mistake is never loaded
        with open(data, "rb") as fh:
            raw = fh.read()
    else:
        raise TypeError(f"expected bytes or a path, not {type(data).__name__}")
    if not raw:
        raise DicomRejection("not_dicom", "The file is empty.")
    return raw


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise DicomRejection(
            "too_large",
            f"The file is {_megabytes(size)}; the largest file accepted is {_megabytes(max_bytes)}.",
        )


def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def _refuse_non_dicom(raw: bytes) -> None:
    """Without the 'DICM' marker, accept only what looks like a bare DICOM data set."""
    for magic, what in _OTHER_FORMATS:
        if raw.startswith(magic):
            raise DicomRejection(
                "not_dicom",
                f"This is {what}, not a DICOM file. Upload the original DICOM file from the PACS "
                "or the X-ray unit.",
            )
    if len(raw) < 132 and not raw.strip(b"\x00"):
        raise DicomRejection(
            "truncated", f"The file ends after {len(raw)} bytes, inside the DICOM preamble."
        )
    head = raw[:512]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        raise DicomRejection(
            "not_dicom",
            "This is a text file, not a DICOM file. Upload the original DICOM file from the PACS "
            "or the X-ray unit.",
        )
    # A data set written without preamble and file meta (old PACS exports) starts with a group
    # 0002 or 0008 tag; pydicom's force=True would otherwise "parse" any bytes at all.
    if raw[:2] not in (b"\x02\x00", b"\x08\x00"):
        raise DicomRejection(
            "not_dicom",
            "The file is not DICOM: it has no 'DICM' marker at byte 128 and does not start like "
            "a DICOM data set.",
        )


def _parse(raw: bytes, has_preamble: bool) -> FileDataset:
    # pydicom reports a premature end of file only as a warning.  catch_warnings is process-wide:
    # in a threaded server another thread's warning could land here at the same moment; the
    # structural checks below and in _check_pixel_data still catch a cut file without it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=not has_preamble)
        except Exception as exc:  # pydicom raises many types on malformed input
            if _looks_like_eof(str(exc)):
                raise DicomRejection(
                    "truncated", "The file is cut short: it ends inside the DICOM header."
                ) from exc
            raise DicomRejection(
                "not_dicom", f"The DICOM header could not be read ({_short(exc)})."
            ) from exc
    eof_warned = any(_looks_like_eof(str(w.message)) for w in caught)
    if eof_warned or not len(ds):
        # pydicom drops the whole data set when an encapsulated (compressed) image is cut short;
        # a header-only parse tells whether the header was complete, to say where the cut is.
        try:
            header = pydicom.dcmread(io.BytesIO(raw), force=not has_preamble, stop_before_pixels=True)
        except Exception:
            header = None
        if header is not None and len(header) and "Rows" in header:
            raise DicomRejection(
                "truncated",
                "The file is cut short: it ends inside the image data. Export or upload the "
                "complete file again.",
            )
        if has_preamble or eof_warned:
            raise DicomRejection(
                "truncated",
                f"The file is cut short: it ends after {len(raw)} bytes, inside the DICOM header.",
            )
    _check_last_element_complete(ds, len(raw))
    _adopt_transfer_syntax(ds)
    return ds


def _looks_like_eof(message: str) -> bool:
    text = message.lower()
    return "end of file" in text or "eof" in text or "unexpected end" in text


def _check_last_element_complete(ds: Dataset, size: int) -> None:
    """pydicom keeps a value cut short by the end of the file without a word; catch that here."""
    if not len(ds):
        return
    try:
        last = ds.get_item(max(ds.keys()))
    except Exception:
        return  # an element pydicom cannot even look at is dropped by _drop_unreadable
    if not isinstance(last, RawDataElement) or last.length == 0xFFFFFFFF:
        return
    value = last.value
    short_value = value is not None and len(value) < last.length
    end = last.value_tell + last.length
    # fewer than 12 unread bytes after the last element is a data element header cut in two
    cut_header = 0 < size - end < 12
    if short_value or cut_header:
        where = "the image data" if last.tag == 0x7FE00010 else "the DICOM header"
        raise DicomRejection(
            "truncated",
            f"The file is cut short: it ends inside {where}. Export or upload the complete file "
            "again.",
        )


def _adopt_transfer_syntax(ds: FileDataset) -> None:
    # A bare data set (or a damaged file meta) has no transfer syntax; record the encoding
    # pydicom detected so the pixel decoder and the writer know it.
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if little is False:
        raise DicomRejection(
            "not_dicom", "The file is a big-endian DICOM data set without file meta information."
        )
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


# Attributes that decide whether the file may be used and how its pixels are read: if pydicom
# cannot read one of them the file is refused.  Any other unreadable element is dropped: it
# could not be checked for identifying content either.
_CRITICAL_ATTRIBUTES: Final = frozenset(Tag(tag_for_keyword(k)) for k in (
    "SOPClassUID", "SOPInstanceUID", "Modality", "BodyPartExamined", "NumberOfFrames",
    "BurnedInAnnotation", "PresentationLUTShape", "RescaleSlope", "RescaleIntercept",
    "ModalityLUTSequence", *_REQUIRED_IMAGE_ATTRIBUTES,
))


def _drop_unreadable(ds: Dataset, *, top_level: bool = True) -> None:
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]  # converts the raw value: raises on a value its VR cannot hold
            if elem.VR in ("DS", "IS"):
                _require_numbers(elem.value)
            if top_level and tag in _CRITICAL_ATTRIBUTES and elem.VR not in dictionary_VR(tag).split(" or "):
                raise ValueError(f"it is encoded as {elem.VR}, not {dictionary_VR(tag)}")
        except Exception as exc:
            if top_level and tag in _CRITICAL_ATTRIBUTES:
                raise DicomRejection(
                    "invalid_attribute",
                    f"{_words(keyword_for_tag(tag))} ({_tag_text(tag)}) cannot be read: "
                    f"{_short(exc, 100)}.",
                ) from exc
            del ds[tag]
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                _drop_unreadable(item, top_level=False)


def _require_numbers(value: object) -> None:
    # pydicom keeps a DS or IS it cannot parse as a plain string (with a warning): not a number
    for v in value if isinstance(value, MultiValue) else [value]:
        if isinstance(v, str) and v.strip():
            raise ValueError(f"'{v}' is not a number")


def _check_header(ds: FileDataset, has_preamble: bool) -> None:
    sop_instance_uid = _text(ds, "SOPInstanceUID")
    modality = _text(ds, "Modality").upper()
    if not has_preamble and not (sop_instance_uid and modality and _text(ds, "SOPClassUID")):
        # force=True turns random bytes into "elements"; without the real identifiers it was not DICOM
        raise DicomRejection(
            "not_dicom",
            "The file is not DICOM: it has no 'DICM' marker and no SOP Class UID, SOP Instance "
            "UID and Modality.",
        )
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "Modality") if not _text(ds, k)]
    if missing:
        raise DicomRejection("missing_attribute", _missing_sentence(missing, "the file cannot be identified"))
    if modality not in _ACCEPTED_MODALITIES:
        raise DicomRejection(
            "wrong_modality",
            f"Modality is {modality}; only chest radiographs (CR or DX) are accepted.",
        )
    body_part = _text(ds, "BodyPartExamined").upper()
    if body_part in _NOT_CHEST_BODY_PARTS:
        raise DicomRejection(
            "not_chest",
            f"Body Part Examined is {body_part}; only chest radiographs are accepted.",
        )
    missing = [k for k in _REQUIRED_IMAGE_ATTRIBUTES if _value(ds, k) in (None, "")]
    if missing:
        raise DicomRejection("missing_attribute", _missing_sentence(missing, "the image cannot be read"))

    frames = _value(ds, "NumberOfFrames")
    if frames not in (None, ""):
        try:
            n_frames = int(frames)
        except (TypeError, ValueError):
            raise DicomRejection(
                "invalid_attribute", f"Number of Frames (0028,0008) is '{frames}', not a number."
            ) from None
        if n_frames > 1:
            raise DicomRejection(
                "multi_frame",
                f"The file holds {n_frames} frames; only single-image radiographs are accepted. "
                "Send each view as its own file.",
            )
        if n_frames < 1:
            raise DicomRejection(
                "invalid_attribute", f"Number of Frames (0028,0008) is {n_frames}; an image has at least one."
            )

    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelRepresentation"):
        value = _value(ds, keyword)
        if not isinstance(value, int):  # US with a multiplicity or a cast gone wrong
            raise DicomRejection(
                "invalid_attribute",
                f"{_words(keyword)} ({_tag_text(tag_for_keyword(keyword))}) is '{value}', not a whole number.",
            )
    photometric = _text(ds, "PhotometricInterpretation").upper()
    samples = int(ds.SamplesPerPixel)
    if photometric not in _MONOCHROME or samples != 1:
        raise DicomRejection(
            "unsupported_photometric",
            f"Photometric Interpretation is {photometric} with {samples} sample(s) per pixel; only "
            "greyscale radiographs (MONOCHROME1 or MONOCHROME2) are accepted.",
        )
    allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        raise DicomRejection(
            "unsupported_pixel_format",
            f"Bits Allocated is {allocated} and Bits Stored {stored}; radiographs with 8 or 16 bits "
            "allocated and at most that many stored are accepted.",
        )
    if int(ds.Rows) < 1 or int(ds.Columns) < 1:
        raise DicomRejection(
            "not_image_size", f"The image is declared {ds.Rows} × {ds.Columns} pixels."
        )
    if _text(ds, "BurnedInAnnotation").upper() == "YES":
        raise DicomRejection(
            "burned_in_annotation",
            "The image has burned-in annotation (Burned In Annotation is YES), which may show "
            "patient details in the pixels. Export the image without burned-in text.",
        )


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


def _missing_sentence(keywords: list[str], consequence: str) -> str:
    names = [f"{_words(k)} ({_tag_text(tag_for_keyword(k))})" for k in keywords]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb = "is" if len(names) == 1 else "are"
    return f"{listed} {verb} missing; {consequence}."


def _words(keyword: str) -> str:
    # "SOPInstanceUID" -> "SOP Instance UID", for sentences a radiographer reads
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", keyword)


def _tag_text(tag: int | None) -> str:
    tag = Tag(tag or 0)
    return f"{tag.group:04X},{tag.element:04X}"


def _check_pixel_data(ds: FileDataset) -> None:
    if "PixelData" not in ds:
        raise DicomRejection(
            "no_pixel_data",
            "The file has no image (Pixel Data is missing); it may be a report, a presentation "
            "state or a header-only export.",
        )
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    if not tsyntax.is_transfer_syntax:
        raise DicomRejection(
            "undecodable",
            f"The image is encoded as {_syntax_name(tsyntax)}, a transfer syntax this platform "
            "cannot read. Export it uncompressed, as JPEG 2000 or as JPEG lossless.",
        )
    if tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            raise DicomRejection(
                "undecodable",
                f"The image is compressed as {_syntax_name(tsyntax)}, which this platform cannot "
                "decode. Export it uncompressed, as JPEG 2000 or as JPEG lossless.",
            )
        return
    rows, columns = int(ds.Rows), int(ds.Columns)
    expected = rows * columns * int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        raise DicomRejection(
            "truncated",
            f"The image data is incomplete: {actual:,} of the {expected:,} bytes that "
            f"{rows} × {columns} pixels need. The file was cut short during export or upload.",
        )
    if actual > expected + 1:  # one byte pads odd lengths to even
        raise DicomRejection(
            "not_image_size",
            f"The image data holds {actual:,} bytes, but {rows} × {columns} pixels need "
            f"{expected:,}; the header does not describe these pixels.",
        )


# Transfer syntaxes newer than pydicom 3.0's dictionary, named for the refusal message.
_NEWER_SYNTAX_NAMES: Final = MappingProxyType({
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
})


def _syntax_name(tsyntax: UID) -> str:
    name = _NEWER_SYNTAX_NAMES.get(str(tsyntax), tsyntax.name)
    return f"{name} ({tsyntax})" if name != str(tsyntax) else f"an unknown transfer syntax ({tsyntax})"


def _decode(ds: FileDataset) -> None:
    tsyntax = UID(ds.file_meta.TransferSyntaxUID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr = ds.pixel_array  # decodes once; pydicom caches the array on the dataset
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # Rust codecs (pylibjpeg-rle) panic with a BaseException
            raise DicomRejection(
                "undecodable",
                f"The image data could not be decoded as {_syntax_name(tsyntax)} "
                f"({_short(exc)}). The file may be damaged; export it again.",
            ) from exc
    for w in caught:
        message = str(w.message)
        if any(benign in message for benign in _BENIGN_DECODE_WARNINGS):
            continue
        if "frames" in message.lower():
            raise DicomRejection(
                "multi_frame",
                "The image data holds more frames than the header declares; only single-image "
                "radiographs are accepted.",
            )
        code = "truncated" if _looks_like_eof(message) or "truncat" in message.lower() else "undecodable"
        raise DicomRejection(
            code,
            f"The image data is damaged: the decoder reported '{_short(message)}'. Export the "
            "file again.",
        )
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomRejection(
            "not_image_size",
            f"The decoded image is {' × '.join(map(str, arr.shape))} pixels, but the header "
            f"declares {ds.Rows} × {ds.Columns}.",
        )


def _check_display_attributes(ds: FileDataset) -> None:
    """Try the rescale / Modality LUT and the VOI LUT once, so rendering cannot fail later."""
    probe = ds.pixel_array[:1, :1]
    try:
        apply_modality_lut(probe, ds)
    except Exception as exc:
        raise DicomRejection(
            "invalid_attribute",
            f"The rescale or Modality LUT cannot be applied ({_short(exc, 100)}); the pixel values "
            "cannot be interpreted.",
        ) from exc
    if "VOILUTSequence" in ds:
        try:
            apply_voi_lut(probe.astype(np.int64), ds, index=0, prefer_lut=True)
        except Exception:
            del ds.VOILUTSequence  # a display LUT that cannot be applied is ignored, as viewers do


def _short(message: object, limit: int = 160) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# De-identification
# ---------------------------------------------------------------------------------------------

Action = Literal["D", "Z", "X", "K", "U"]

# PS3.15 Annex E, Table E.1-1 (2024b), Basic Application Level Confidentiality Profile column:
# D replace with a dummy value, Z replace with zero length, X remove, K keep, U replace the UID
# with one derived from it.  Where the table leaves a choice (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) the
# letter here is the one that the CR and DX IODs allow (Type 3 → X, Type 2 → Z, Type 1 → D);
# the table's own letters are in the comment.  Entries for other kinds of object (RT plans,
# ophthalmic and camera photographs, specimens, hanging protocols, waveforms) are left out:
# a CR/DX file does not carry them, and the catch-all rules in BEYOND_PROFILE (every person
# name, date, time and non-standard UID not listed here) would clear them anyway.
BASIC_PROFILE: Final[Mapping[str, Action]] = MappingProxyType({
    # -- patient
    "PatientName": "Z",  # replaced by the case code after the profile is applied
    "PatientID": "Z",  # Z/D; replaced by the case code
    "IssuerOfPatientID": "X",
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientSex": "Z",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientBirthName": "X",
    "PatientMotherBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "PatientTelephoneNumbers": "X",
    "PatientTelecomInformation": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "MedicalRecordLocator": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "SmokingStatus": "X",
    "AdditionalPatientHistory": "X",
    "PregnancyStatus": "X",
    "LastMenstrualDate": "X",
    "PatientReligiousPreference": "X",
    "PatientComments": "X",
    "PatientSexNeutered": "X",  # X/Z
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "InsurancePlanIdentification": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "PatientPrimaryLanguageModifierCodeSequence": "X",
    "ReferencedPatientPhotoSequence": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPatientAliasSequence": "X",
    "PatientState": "X",
    "PatientTransportArrangements": "X",
    "SpecialNeeds": "X",
    "PatientInstitutionResidence": "X",
    "ConfidentialityConstraintOnPatientDataDescription": "X",
    # -- visit and admission
    "AdmissionID": "X",
    "IssuerOfAdmissionID": "X",
    "IssuerOfAdmissionIDSequence": "X",
    "AdmittingDate": "X",
    "AdmittingTime": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "DischargeDate": "X",
    "DischargeTime": "X",
    "DischargeDiagnosisDescription": "X",
    "CurrentPatientLocation": "X",
    "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X",
    "IssuerOfServiceEpisodeID": "X",
    "IssuerOfServiceEpisodeIDSequence": "X",
    "ScheduledAdmissionDate": "X",
    "ScheduledAdmissionTime": "X",
    "ScheduledDischargeDate": "X",
    "ScheduledDischargeTime": "X",
    "ScheduledPatientInstitutionResidence": "X",
    "VisitComments": "X",
    "ReasonForVisit": "X",
    "ReasonForVisitCodeSequence": "X",
    # -- study
    "StudyInstanceUID": "U",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDescription": "X",
    "StudyComments": "X",
    "StudyIDIssuer": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "Z",
    "ConsultingPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "ReasonForStudy": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "RequestedProcedureDescription": "X",  # X/Z
    "RequestedContrastAgent": "X",
    "ScheduledStudyLocation": "X",
    "ScheduledStudyLocationAETitle": "X",
    "ScheduledStudyStartDate": "X",
    "ScheduledStudyStartTime": "X",
    "ScheduledStudyStopDate": "X",
    "ScheduledStudyStopTime": "X",
    "StudyArrivalDate": "X",
    "StudyArrivalTime": "X",
    "StudyCompletionDate": "X",
    "StudyCompletionTime": "X",
    "StudyReadDate": "X",
    "StudyReadTime": "X",
    "StudyVerifiedDate": "X",
    "StudyVerifiedTime": "X",
    "ReferencedStudySequence": "X",  # X/Z
    "TimezoneOffsetFromUTC": "X",
    # -- series, procedure step and request
    "SeriesInstanceUID": "U",
    "SeriesDate": "X",  # X/D
    "SeriesTime": "X",  # X/D
    "SeriesDescription": "X",
    "ProtocolName": "X",  # X/D
    "OperatorsName": "X",  # X/Z/D
    "OperatorIdentificationSequence": "X",  # X/D
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedProcedureStepStartDateTime": "X",
    "PerformedProcedureStepEndDateTime": "X",
    "PerformedProcedureStepDescription": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "PerformedLocation": "X",
    "PerformedStationAETitle": "X",
    "PerformedStationName": "X",
    "PerformedStationNameCodeSequence": "X",
    "PerformedStationGeographicLocationCodeSequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",  # X/Z/D
    "RequestAttributesSequence": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureComments": "X",
    "RequestedProcedureLocation": "X",
    "ReasonForTheRequestedProcedure": "X",
    "ReasonForRequestedProcedureCodeSequence": "X",
    "RequestedSeriesDescription": "X",
    "ScheduledProcedureStepID": "X",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepLocation": "X",
    "ScheduledProcedureStepStartDate": "X",
    "ScheduledProcedureStepStartTime": "X",
    "ScheduledProcedureStepEndDate": "X",
    "ScheduledProcedureStepEndTime": "X",
    "ScheduledProcedureStepStartDateTime": "X",
    "ScheduledProcedureStepExpirationDateTime": "X",
    "ScheduledProcedureStepModificationDateTime": "X",
    "ProcedureStepCancellationDateTime": "X",
    "ExpectedCompletionDateTime": "X",
    "ScheduledStationAETitle": "X",
    "ScheduledStationName": "X",
    "ScheduledStationNameCodeSequence": "X",
    "ScheduledStationGeographicLocationCodeSequence": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledPerformingPhysicianIdentificationSequence": "X",
    "ScheduledHumanPerformersSequence": "X",
    "ActualHumanPerformersSequence": "X",
    "HumanPerformerName": "X",
    "HumanPerformerOrganization": "X",
    "ImagingServiceRequestComments": "X",
    "ReasonForTheImagingServiceRequest": "X",
    "IssueDateOfImagingServiceRequest": "X",
    "IssueTimeOfImagingServiceRequest": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z",
    "OrderEnteredBy": "X",
    "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X",
    "OrderCallbackTelecomInformation": "X",
    "NamesOfIntendedRecipientsOfResults": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X",
    "PersonAddress": "X",
    "PersonTelephoneNumbers": "X",
    "PersonTelecomInformation": "X",
    "PreMedication": "X",
    "AcquisitionProtocolDescription": "X",
    "CommentsOnRadiationDose": "X",
    # -- equipment
    "InstitutionName": "X",  # X/Z/D
    "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X",  # X/Z/D
    "InstitutionalDepartmentName": "X",
    "InstitutionalDepartmentTypeCodeSequence": "X",
    "StationName": "X",  # X/Z/D
    "StationAETitle": "X",
    "RetrieveAETitle": "X",
    "NetworkID": "X",
    "DeviceSerialNumber": "X",  # X/Z/D
    "DeviceUID": "U",
    "DeviceDescription": "X",
    "LongDeviceDescription": "X",
    "DeviceSettingDescription": "X",
    "UniqueDeviceIdentifier": "X",
    "UDISequence": "X",
    "ManufacturerDeviceClassUID": "U",
    "DetectorID": "X",  # X/D
    "XRayDetectorID": "D",
    "XRayDetectorLabel": "X",
    "XRaySourceID": "D",
    "DateOfLastDetectorCalibration": "X",  # X/D
    "TimeOfLastDetectorCalibration": "X",  # X/D
    "DateOfLastCalibration": "X",
    "TimeOfLastCalibration": "X",
    "DateTimeOfLastCalibration": "X",
    "CalibrationDateTime": "Z",
    "DateOfInstallation": "X",
    "DateOfManufacture": "X",
    "GantryID": "X",
    "GeneratorID": "X",
    "CassetteID": "X",
    "PlateID": "X",
    "AcquisitionDeviceProcessingDescription": "X",  # X/D
    # -- image and instance
    "SOPInstanceUID": "U",
    "MediaStorageSOPInstanceUID": "U",
    "InstanceCreationDate": "X",  # X/D
    "InstanceCreationTime": "X",  # X/Z/D
    "InstanceCreatorUID": "U",
    "InstanceCoercionDateTime": "X",
    "InstanceOriginStatus": "X",
    "ContentDate": "D",  # Z/D; Type 1 in the DX image module
    "ContentTime": "D",  # Z/D
    "AcquisitionDate": "X",  # X/Z
    "AcquisitionTime": "X",  # X/Z
    "AcquisitionDateTime": "X",  # X/Z/D
    "StartAcquisitionDateTime": "X",  # X/D
    "EndAcquisitionDateTime": "X",  # X/D
    "FrameAcquisitionDateTime": "D",
    "FrameReferenceDateTime": "D",
    "AcquisitionUID": "U",
    "AcquisitionComments": "X",
    "AcquisitionContextSequence": "Z",  # X/Z; Type 2 in DX (Acquisition Context module)
    "ImageComments": "X",
    "FrameComments": "X",
    "ImagePresentationComments": "X",
    "DerivationDescription": "X",
    "IdentifyingComments": "X",
    "ReferencedImageSequence": "X",  # X/Z/U*
    "SourceImageSequence": "X",  # X/Z/U*
    "ReferencedSOPInstanceUID": "U",
    "ReferencedSOPInstanceUIDInFile": "U",
    "IrradiationEventUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "ReferencedFrameOfReferenceUID": "U",
    "RelatedFrameOfReferenceUID": "U",
    "SourceFrameOfReferenceUID": "U",
    "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U",
    "StorageMediaFileSetUID": "U",
    "TransactionUID": "U",
    "PaletteColorLookupTableUID": "U",
    "LargePaletteColorLookupTableUID": "U",
    "FiducialUID": "U",
    "TrackingUID": "U",
    "TargetUID": "U",
    "PyramidUID": "U",
    "SpecimenUID": "U",
    "MultiplexGroupUID": "U",
    "FailedSOPInstanceUIDList": "U",
    "TemplateExtensionCreatorUID": "U",
    "TemplateExtensionOrganizationUID": "U",
    "PresentationDisplayCollectionUID": "U",
    "PresentationSequenceCollectionUID": "U",
    "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID": "U",
    "IconImageSequence": "X",
    "OverlayDate": "X",
    "OverlayTime": "X",
    "CurveDate": "X",
    "CurveTime": "X",
    "ContrastBolusAgent": "Z",  # Z/D
    "ContrastBolusStartTime": "X",
    "ContrastBolusStopTime": "X",
    "ModifiedImageDate": "X",
    "ModifiedImageTime": "X",
    "ModifiedImageDescription": "X",
    "ModifyingDeviceID": "X",
    "DateOfSecondaryCapture": "X",
    "TimeOfSecondaryCapture": "X",
    "LabelText": "X",  # X/Z
    "BarcodeValue": "X",  # X/Z
    # -- reports, annotations and structured content
    "ContentSequence": "D",
    "GraphicAnnotationSequence": "D",
    "TextString": "X",
    "TextComments": "X",
    "Arbitrary": "X",
    "PersonName": "D",
    "PersonIdentificationCodeSequence": "D",
    "VerifyingObserverName": "D",
    "VerifyingObserverSequence": "D",
    "VerifyingObserverIdentificationCodeSequence": "Z",
    "VerifyingOrganization": "D",
    "VerificationDateTime": "D",
    "AuthorObserverSequence": "X",
    "ParticipantSequence": "X",
    "ParticipationDateTime": "Z",
    "CustodialOrganizationSequence": "X",
    "ContentCreatorName": "Z",  # Z/D
    "ContentCreatorIdentificationCodeSequence": "X",
    "ObservationDateTime": "X",  # X/D
    "ObservationStartDateTime": "X",
    "ObservationUID": "U",
    "ReferencedObservationUIDTrial": "U",
    "ObservationSubjectUIDTrial": "U",
    "UID": "U",
    "Date": "D",
    "Time": "D",
    "DateTime": "D",
    "ReferencedDateTime": "D",
    "InterpretationAuthor": "X",
    "InterpretationText": "X",
    "InterpretationDiagnosisDescription": "X",
    "InterpretationApproverSequence": "X",
    "InterpretationRecorder": "X",
    "InterpretationTranscriber": "X",
    "InterpretationID": "X",
    "InterpretationIDIssuer": "X",
    "InterpretationRecordedDate": "X",
    "InterpretationRecordedTime": "X",
    "InterpretationTranscriptionDate": "X",
    "InterpretationTranscriptionTime": "X",
    "InterpretationApprovalDate": "X",
    "InterpretationApprovalTime": "X",
    "PhysicianApprovingInterpretation": "X",
    "Impressions": "X",
    "ResultsComments": "X",
    "ResultsDistributionListSequence": "X",
    "ResultsID": "X",
    "ResultsIDIssuer": "X",
    "DistributionName": "X",
    "DistributionAddress": "X",
    "AddressTrial": "X",
    "TelephoneNumberTrial": "X",
    "CurrentObserverTrial": "X",
    "VerbalSourceTrial": "X",
    "VerbalSourceIdentifierCodeSequenceTrial": "X",
    "ObservationDateTrial": "X",
    "ObservationTimeTrial": "X",
    "DateOfDocumentOrVerbalTransactionTrial": "X",
    "TimeOfDocumentCreationOrVerbalTransactionTrial": "X",
    "FindingsGroupRecordingDateTrial": "X",
    "FindingsGroupRecordingTimeTrial": "X",
    "HL7DocumentEffectiveTime": "X",
    "TopicTitle": "X",
    "TopicSubject": "X",
    "TopicAuthor": "X",
    "TopicKeywords": "X",
    # -- audit trail and signatures
    "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X",
    "NonconformingModifiedAttributesSequence": "X",
    "NonconformingDataElementValue": "X",
    "AttributeModificationDateTime": "D",
    "ModifyingSystem": "D",
    "SourceOfPreviousValues": "Z",
    "ReasonForTheAttributeModification": "D",
    "MAC": "X",
    "DigitalSignatureUID": "U",
    "DigitalSignaturesSequence": "X",
    "ReferencedDigitalSignatureSequence": "X",
    "ReferencedSOPInstanceMACSequence": "X",
    "CertificateOfSigner": "D",
    "DigitalSignatureDateTime": "D",
    "CertifiedTimestamp": "X",
    "DataSetTrailingPadding": "X",
    # -- clinical trial attributes left by another trial
    "ClinicalTrialSponsorName": "D",
    "ClinicalTrialProtocolID": "D",
    "ClinicalTrialProtocolName": "Z",
    "ClinicalTrialSiteID": "Z",
    "ClinicalTrialSiteName": "Z",
    "ClinicalTrialSubjectID": "D",
    "ClinicalTrialSubjectReadingID": "D",
    "ClinicalTrialTimePointID": "Z",
    "ClinicalTrialTimePointDescription": "X",
    "ClinicalTrialCoordinatingCenterName": "Z",
    "ClinicalTrialProtocolEthicsCommitteeName": "D",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber": "X",
    "ClinicalTrialSeriesID": "X",
    "ClinicalTrialSeriesDescription": "X",
    "IssuerOfClinicalTrialProtocolID": "X",
    "IssuerOfClinicalTrialSeriesID": "X",
    "IssuerOfClinicalTrialSiteID": "X",
    "IssuerOfClinicalTrialSubjectID": "X",
    "IssuerOfClinicalTrialSubjectReadingID": "X",
    "IssuerOfClinicalTrialTimePointID": "X",
    "OtherClinicalTrialProtocolIDsSequence": "X",
    "EthicsCommitteeApprovalEffectivenessStartDate": "X",
    "EthicsCommitteeApprovalEffectivenessEndDate": "X",
})

# Where we go further than the table, and why.  Applied after BASIC_PROFILE, never instead of it.
BEYOND_PROFILE: Final[Mapping[str, str]] = MappingProxyType({
    "private attributes": "X, with their private creators, at every depth (the profile's default "
                          "without the Retain Safe Private option)",
    "overlay and curve groups (60xx, 50xx)": "X, whole groups: overlays can carry burned-in text",
    "IssuerOfAccessionNumberSequence": "X: names the issuing institution",
    "group length elements (gggg,0000)": "X: retired, and stale once values change",
    "file meta information": "rebuilt: source/sending AE titles and private meta are dropped",
    "any other PN": "Z: a person's name in an attribute the table does not list",
    "any other UI not under the DICOM root 1.2.840.10008": "U: an instance UID the table does not list",
    "any other DA, DT or TM": "X: the basic profile keeps no dates (no Retain Longitudinal option)",
    "any other element of VR UN": "X: content we cannot interpret is not kept",
    "public attributes unknown to pydicom's dictionary": "X: nothing says they are safe",
    "any other element whose VR is not its dictionary VR": "X: e.g. a sequence stored as bytes",
    "any other text value too long for its VR or holding control characters":
        "X: a damaged length field makes a value swallow the elements after it",
})

# Option 113108: keeps what describes the body, not the person, for readers who need age and sex.
_PATIENT_CHARACTERISTICS: Final = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight")

_DEID_METHOD: Final = "PS3.15 E.1 Basic Application Level Confidentiality Profile"
_RETAIN_CHARACTERISTICS_METHOD: Final = "PS3.15 E.3.5 Retain Patient Characteristics Option"


def _tag(keyword: str) -> BaseTag:
    tag = tag_for_keyword(keyword)
    if tag is None:  # a typo in the table must fail loudly at import, not leak silently
        raise KeyError(f"unknown DICOM keyword in the de-identification table: {keyword}")
    return Tag(tag)


_ACTIONS_BY_TAG: Final[Mapping[BaseTag, Action]] = MappingProxyType({
    **{_tag(k): a for k, a in BASIC_PROFILE.items()},
    _tag("IssuerOfAccessionNumberSequence"): "X",
})

_DUMMY_TEXT: Final = "ANONYMIZED"
_DUMMY_BY_VR: Final[Mapping[str, object]] = MappingProxyType({
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
})
_TEXT_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DICOM_ROOT: Final = "1.2.840.10008."


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

    Applies BASIC_PROFILE, then BEYOND_PROFILE, at every depth; replaces each UID by an HMAC of
    it under `uid_secret` (the same UID and secret always give the same new UID, so the files of
    one study still belong together); names the patient `case_code`.  Pixel data are copied
    unchanged.  With `retain_patient_characteristics`, sex, age, size and weight are kept and the
    Retain Patient Characteristics Option (113108) is declared.
    """
    _check_case_code(case_code)
    if not uid_secret:
        raise ValueError("uid_secret must not be empty")
    _check_uid_root(uid_root)
    actions = dict(_ACTIONS_BY_TAG)
    if retain_patient_characteristics:
        actions.update({_tag(k): "K" for k in _PATIENT_CHARACTERISTICS})

    record = DeidRecord(
        accession_number=_text(ds, "AccessionNumber"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
    )
    uids = _UidMap(secret=uid_secret, root=uid_root)
    out = FileDataset("", Dataset(), file_meta=FileMetaDataset(), preamble=b"\x00" * 128)
    _copy_clean(ds, out, actions, uids)

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


def _copy_clean(src: Dataset, dst: Dataset, actions: Mapping[BaseTag, Action], uids: _UidMap) -> None:
    for tag in list(src.keys()):
        tag = Tag(tag)
        if tag.is_private or tag.element == 0x0000 or tag.group == 0x0002 or tag.group & 0xFF00 in (0x5000, 0x6000):
            continue  # group 0002 outside the file meta is misplaced: the meta is rebuilt
        try:
            elem = src[tag]
            _copy_element(elem, dst, actions.get(tag) or _default_action(elem), actions, uids)
        except Exception:
            continue  # a value pydicom cannot read or write is one we cannot vouch for: drop it


def _copy_element(
    elem: DataElement, dst: Dataset, action: Action, actions: Mapping[BaseTag, Action], uids: _UidMap
) -> None:
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
        items = Sequence()
        for item in elem.value:
            clean = Dataset()
            _copy_clean(item, clean, actions, uids)
            items.append(clean)
        dst.add(DataElement(tag, vr, items, is_undefined_length=elem.is_undefined_length))
    else:  # K: values are immutable (str, bytes, numbers) except multi-values, copied here
        value = list(elem.value) if isinstance(elem.value, MultiValue) else elem.value
        dst.add(DataElement(tag, vr, value, is_undefined_length=elem.is_undefined_length))


def _default_action(elem: DataElement) -> Action:
    """The catch-all rules of BEYOND_PROFILE for attributes the table does not list."""
    vr = elem.VR
    if not dictionary_has_tag(elem.tag):
        return "X"  # a public attribute the dictionary does not know: nothing says it is safe
    if vr not in dictionary_VR(elem.tag).split(" or "):
        return "X"  # e.g. a sequence stored as bytes: its content cannot be inspected
    if vr == "PN":
        return "Z"
    if vr in ("DA", "DT", "TM", "UN"):
        return "X"
    if vr == "UI":
        values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
        if any(v and not str(v).startswith(_DICOM_ROOT) for v in values):
            return "U"
    if _looks_corrupt(elem):
        return "X"
    return "K"


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


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

WindowSource = Literal["file VOI LUT", "file window", "auto percentile"]


@dataclass(frozen=True)
class RenderedImage:
    """The 8-bit display image (and its thumbnail) that readers and the AI model see."""

    png: bytes
    thumbnail_png: bytes
    width: int
    height: int
    window_center: float  # in modality units (after Rescale Slope/Intercept)
    window_width: float
    source: WindowSource


_AUTO_PERCENTILES: Final = (0.5, 99.5)


def render_display(
    ds: Dataset,
    *,
    max_side: int = 2048,
    thumb_side: int = 256,
    window: Literal["file", "auto"] = "file",
) -> RenderedImage:
    """Render the greyscale display PNG: modality LUT, VOI (the file's LUT or window, else a robust
    percentile window), MONOCHROME1 inversion, 8 bits, long side at most `max_side`.

    `window="auto"` ignores the file's VOI: some CR units store a window that looks flat.
    Pass the dataset read_radiograph returned: its decoded pixels are cached there.
    """
    if max_side < 1 or thumb_side < 1:
        raise ValueError("max_side and thumb_side must be positive")
    arr = ds.pixel_array
    if arr.ndim != 2:
        raise ValueError(f"expected one greyscale frame, got an array of shape {arr.shape}")
    lut, center, width, source = _display_lut(ds, arr, window)
    # Every step runs on the lookup table (at most 65,536 entries), never on the full image: the
    # image itself is touched once, by this gather, and stays 8-bit from here on.
    pixels = lut[_lut_index(arr)]

    image = Image.fromarray(pixels)  # 2-D uint8: mode "L"
    if max(image.size) > max_side:
        image = image.resize(_fit(image.size, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    thumb = image.resize(_fit(image.size, thumb_side), Image.Resampling.LANCZOS, reducing_gap=2.0) \
        if max(image.size) > thumb_side else image
    return RenderedImage(
        png=_png(image, fast=True),
        thumbnail_png=_png(thumb, fast=False),
        width=image.width,
        height=image.height,
        window_center=float(center),
        window_width=float(width),
        source=source,
    )


@dataclass(frozen=True)
class ValuesImage:
    """What the viewer needs for a real window/level: the image's values at display size, 16 bits packed
    into the red (high byte) and green (low byte) channels of an RGB PNG, higher = brighter (MONOCHROME1
    already inverted), and window presets in those units ([center, width], or None)."""

    png: bytes
    width: int
    height: int
    windows: dict[str, list[float] | None]


# Presets for radiographs, whose values have no physical unit (unlike CT's Hounsfield units): positions
# and widths as fractions of the auto window (lo..hi), lungs being the dark part of a chest film.
_PRESETS: Final = {"lung": (0.35, 0.70), "mediastinum": (0.70, 0.50), "bone": (0.80, 0.30)}


def render_values(ds: Dataset, *, max_side: int = 2048) -> ValuesImage:
    """The modality values at the display image's size (same resize) for the browser's window/level."""
    arr = ds.pixel_array
    if arr.ndim != 2:
        raise ValueError(f"expected one greyscale frame, got an array of shape {arr.shape}")
    domain = _lut_domain(arr)
    modality = np.asarray(apply_modality_lut(domain, ds), dtype=np.float64)
    padding = _padding_mask(ds, domain)
    hist = np.bincount(_lut_index(arr)[::2, ::2].ravel(), minlength=domain.size)
    hist[padding] = 0
    present = hist > 0
    if not present.any():
        present = ~padding if (~padding).any() else np.ones(domain.size, dtype=bool)
    m_min, m_max = float(modality[present].min()), float(modality[present].max())
    scale = 65535.0 / max(m_max - m_min, 1e-9)
    inverted = _inverted(ds)
    # One table from stored value to viewer value; the image itself is touched once, by the gather.
    to_view = (m_max - modality) if inverted else (modality - m_min)
    lut = np.clip(np.rint(to_view * scale), 0, 65535).astype(np.float32)
    lut[padding] = 0.0
    values = Image.fromarray(lut[_lut_index(arr)], mode="F")
    if max(values.size) > max_side:
        values = values.resize(_fit(values.size, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    v = np.clip(np.rint(np.asarray(values)), 0, 65535).astype(np.uint16)
    rgb = np.zeros((*v.shape, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = v >> 8, v & 0xFF
    buf = io.BytesIO()
    # The low byte is mostly noise: Huffman coding alone is as small as level 1 and a third faster.
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY)

    def in_view_units(center: float, width: float) -> list[float]:
        c = (m_max - center) if inverted else (center - m_min)
        return [round(c * scale, 3), round(width * scale, 3)]

    low, high = _percentiles(modality, hist)
    auto = in_view_units((low + high) / 2, high - low)
    lo, span = auto[0] - auto[1] / 2, auto[1]
    windows: dict[str, list[float] | None] = {"auto": auto, "file": None}
    file_window = _file_window(ds)
    if file_window is not None:
        windows["file"] = in_view_units(*file_window)
    for name, (position, width) in _PRESETS.items():
        windows[name] = [round(lo + position * span, 3), round(width * span, 3)]
    return ValuesImage(png=buf.getvalue(), width=int(v.shape[1]), height=int(v.shape[0]), windows=windows)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    w, h = size
    scale = side / max(w, h)
    if scale >= 1:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _png(image: Image.Image, *, fast: bool) -> bytes:
    buf = io.BytesIO()
    if fast:
        # Quantum noise leaves LZ77 little to match in a radiograph: Huffman coding alone makes a
        # smaller file than level 1 (RG1: 1.23 vs 1.57 MB) in less time (0.14 vs 0.16 s; level 6
        # takes 0.8 s).
        image.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY)
    else:
        image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _lut_domain(arr: np.ndarray) -> np.ndarray:
    """Every stored value the array's dtype can hold, in the order _lut_index addresses them."""
    if arr.dtype == np.uint8:
        return np.arange(256, dtype=np.uint8)
    if arr.dtype == np.int8:
        return np.arange(256, dtype=np.uint8).view(np.int8)
    if arr.dtype == np.uint16:
        return np.arange(65536, dtype=np.uint16)
    if arr.dtype == np.int16:
        return np.arange(65536, dtype=np.uint16).view(np.int16)
    raise ValueError(f"pixel arrays of type {arr.dtype} are not rendered (8 or 16 bits expected)")


def _lut_index(arr: np.ndarray) -> np.ndarray:
    # Signed values are addressed through their two's-complement bit pattern: no copy.
    if arr.dtype == np.int8:
        return arr.view(np.uint8)
    if arr.dtype == np.int16:
        return arr.view(np.uint16)
    return arr


def _display_lut(
    ds: Dataset, arr: np.ndarray, window: Literal["file", "auto"]
) -> tuple[np.ndarray, float, float, WindowSource]:
    """Stored value → 8-bit display value, for every possible stored value."""
    domain = _lut_domain(arr)
    modality = apply_modality_lut(domain, ds)
    padding = _padding_mask(ds, domain)

    # Histogram on every other row and column: a quarter of the work, the same percentiles.
    hist = np.bincount(_lut_index(arr)[::2, ::2].ravel(), minlength=domain.size)
    hist[padding] = 0
    low, high = _percentiles(modality, hist)

    y: np.ndarray | None = None
    source: WindowSource = "auto percentile"
    center, width = (low + high) / 2, high - low
    if window == "file" and "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        y, center, width = _voi_lut(ds, modality)
        source = "file VOI LUT"
    elif window == "file":
        file_window = _file_window(ds)
        if file_window is not None:
            c, w = file_window
            # A stored window that misses the image entirely would render it blank: auto instead.
            if c - w / 2 < high and c + w / 2 > low:
                y = _apply_window(modality, c, w, _text(ds, "VOILUTFunction").upper() or "LINEAR")
                center, width, source = c, w, "file window"
    if y is None:
        y = np.clip((modality - low) / (high - low), 0.0, 1.0)

    if _inverted(ds):
        y = 1.0 - y
    lut = np.rint(y * 255.0).astype(np.uint8)
    lut[padding] = 0  # padding is "no image": black, whatever the polarity
    return lut, center, width, source


def _padding_mask(ds: Dataset, domain: np.ndarray) -> np.ndarray:
    mask = np.zeros(domain.size, dtype=bool)
    value = _pixel_value(ds, "PixelPaddingValue")
    if value is None:
        return mask
    limit = _pixel_value(ds, "PixelPaddingRangeLimit")
    low, high = (value, value) if limit is None else sorted((value, limit))
    mask[(domain >= low) & (domain <= high)] = True
    return mask


def _pixel_value(ds: Dataset, keyword: str) -> int | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        value = int(value[0] if isinstance(value, (list, MultiValue)) else value)
    except (TypeError, ValueError, IndexError):
        return None
    # US/SS is ambiguous in the dictionary: read a signed image's padding as signed
    if int(_value(ds, "PixelRepresentation") or 0) == 1 and value > 32767:
        value -= 65536
    return value


def _percentiles(modality: np.ndarray, hist: np.ndarray) -> tuple[float, float]:
    order = np.argsort(modality, kind="stable")
    values = np.asarray(modality, dtype=np.float64)[order]
    cumulative = np.cumsum(hist[order])
    total = cumulative[-1]
    if total == 0:  # nothing but padding: any window will do
        return float(values[0]), max(float(values[-1]), float(values[0]) + 1.0)
    lo_q, hi_q = _AUTO_PERCENTILES
    low = float(values[np.searchsorted(cumulative, total * lo_q / 100.0, side="right")])
    high = float(values[min(np.searchsorted(cumulative, total * hi_q / 100.0, side="left"), values.size - 1)])
    if high <= low:
        high = low + 1.0
    return low, high


def _file_window(ds: Dataset) -> tuple[float, float] | None:
    center, width = _value(ds, "WindowCenter"), _value(ds, "WindowWidth")
    if center in (None, "") or width in (None, ""):
        return None
    try:
        c = float(center[0] if isinstance(center, MultiValue) else center)
        w = float(width[0] if isinstance(width, MultiValue) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w >= 1 else None


def _apply_window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing, scaled to 0..1."""
    x = np.asarray(x, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    # LINEAR (the default): the DICOM formula with its half-unit offsets
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0) if w > 1 else (x > c - 0.5).astype(np.float64)


def _voi_lut(ds: Dataset, modality: np.ndarray) -> tuple[np.ndarray, float, float]:
    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 65536
    first = int(item.LUTDescriptor[1])
    if int(_value(ds, "PixelRepresentation") or 0) == 1 and first > 32767:
        first -= 65536
    # the LUT is indexed by integers; rescaled values are rounded to the nearest one
    index = modality if np.issubdtype(modality.dtype, np.integer) else np.rint(modality).astype(np.int64)
    out = apply_voi_lut(index, ds, index=0, prefer_lut=True).astype(np.float64)
    # the LUT's own output range, read through pydicom (LUT Data may be US or OW, either endian)
    entries_out = apply_voi_lut(np.arange(first, first + entries, dtype=np.int64), ds, index=0, prefer_lut=True)
    lo, hi = float(entries_out.min()), float(entries_out.max())
    y = np.clip((out - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(out)
    # report the input range the LUT covers, as the equivalent window
    return y, first + entries / 2.0, float(entries)


def _inverted(ds: Dataset) -> bool:
    # MONOCHROME1 means "higher is darker".  DX files declare the same thing again with
    # Presentation LUT Shape INVERSE (PS3.3 C.8.11.3): one inversion, not two.  INVERSE on a
    # MONOCHROME2 image does ask for inversion.
    return (
        _text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1"
        or _text(ds, "PresentationLUTShape").upper() == "INVERSE"
    )


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
