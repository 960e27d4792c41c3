"""Read and validate one uploaded chest radiograph; refuse it with a stable code (DicomRejection); no Django."""

from __future__ import annotations

import io
import math
import os
import re
import warnings
import zlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import generate_fragments
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
    RLELossless,
)

from .attributes import _text, _value
from .codestream import (
    RLE_MAX_EXPANSION,
    CodestreamError,
    CodestreamSize,
    RleHeader,
    jpeg2000_size,
    jpeg_size,
    rle_header,
)

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
    "too_many_pixels": "Image larger than the pixel limit",
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


# ---------------------------------------------------------------------------------------------
# Limits on what a file may make us allocate
# ---------------------------------------------------------------------------------------------

# The largest chest radiographs are flat-panel DR images of a 43 × 43 cm detector at 100 µm (about
# 4,300 × 4,300 = 18.5 megapixels) and 35 × 43 cm CR plates read at 100 µm (3,520 × 4,280 = 15
# megapixels).  25 megapixels (5,000 × 5,000) leaves a third more than that.  Measured at that size:
# a decoded image of 50 MB, and at most about 400 MB of peak memory for one file through
# read_radiograph (JPEG 2000 decoding is the dearest step), render_display and render_values, where a
# forged header asked for gigabytes.
MAX_PIXELS: Final = 25_000_000

# A JPEG 2000 decoder allocates bookkeeping for every tile the SIZ marker declares (about 7 KB each
# in OpenJPEG) before it reads any of them: a 67-byte codestream declaring 62,500 tiles of 8 × 8 took
# it to 490 MB.  Real radiographs come as one tile or a few hundred (256 × 256 tiles of a 4,300²
# image: 289); 4,096 tiles cost at most about 30 MB.
MAX_TILES: Final = 4096

# What a deflated data set may inflate to beyond its pixels (16 bits each at most): the header.
_HEADER_ALLOWANCE: Final = 16 * 1024 * 1024


def read_radiograph(
    data: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> FileDataset:
    """Parse and validate one chest radiograph; refuse with a DicomRejection, else return it decoded.

    `data` is the file's content or its path.  The returned dataset's pixel array is already
    decoded (pydicom caches it), so rendering it does not decode a second time.  Nothing is
    decoded or inflated before the size it would take is known to be within `max_bytes` (the
    file) and `max_pixels` (Rows × Columns × samples × frames, and the compressed codestream's
    own idea of the same).
    """
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    raw = _restore_preamble(_load(data, max_bytes))
    has_preamble = len(raw) >= 132 and raw[128:132] == b"DICM"
    if not has_preamble:
        _refuse_non_dicom(raw)
    else:
        _check_inflated_size(raw, limit=2 * max_pixels + _HEADER_ALLOWANCE)
    ds = _parse(raw, has_preamble)
    _drop_unreadable(ds)
    _check_header(ds, has_preamble)
    check_pixel_count(ds, max_pixels)
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


def _restore_preamble(raw: bytes) -> bytes:
    """Put back the preamble (and 'DICM') of a file whose sender dropped them but kept its file meta, so that it is
    read like any other file: its transfer syntax from its file meta, and a deflated data set measured before
    pydicom inflates it (a file meta at byte 0 would otherwise be read by force, past _check_inflated_size)."""
    if raw.startswith(b"DICM"):
        return bytes(128) + raw
    if raw.startswith(b"\x02\x00"):  # a group 0002 tag, little-endian: only the file meta has them
        return bytes(128) + b"DICM" + raw
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
    # A data set written without preamble and file meta (old PACS exports, ACR-NEMA archives) starts with a group
    # 0008 tag, little- or big-endian (one that starts with its file meta got its preamble back in _restore_preamble);
    # pydicom's force=True would otherwise "parse" any bytes at all.
    if raw[:2] not in (b"\x08\x00", b"\x00\x08"):
        raise DicomRejection(
            "not_dicom",
            "The file is not DICOM: it has no 'DICM' marker at byte 128 and does not start like "
            "a DICOM data set.",
        )


def _check_inflated_size(raw: bytes, *, limit: int) -> None:
    """pydicom inflates a Deflated Explicit VR Little Endian data set whole, in one call, before a
    single attribute can be looked at: a few megabytes of zeros inflate to gigabytes.  Inflate it
    here first, a megabyte at a time and keeping nothing, and refuse it once it passes `limit`."""
    fp = io.BytesIO(raw)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)  # pydicom's own reader: the data set starts where dcmread's will
    except Exception:
        return  # a damaged file meta: _parse says so
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending: bytes = raw[fp.tell():]
    size = 0
    try:
        while pending and size <= limit:
            size += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
        if size <= limit:  # all input taken: what zlib still holds is less than its 32 KB window
            size += len(inflater.flush())
    except zlib.error:
        return  # not a deflate stream: _parse refuses it with pydicom's reason
    if size > limit:
        raise DicomRejection(
            "too_large",
            f"The deflated DICOM data set inflates to more than {_megabytes(limit)}, more than an image "
            "within the pixel limit needs. Export the file uncompressed or with compressed pixel data.",
        )
    if not inflater.eof:  # every byte read and the last deflate block still to come
        raise DicomRejection(
            "truncated",
            "The file is cut short: its deflated data set ends before the deflate stream does. Export or upload "
            "the complete file again.",
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
    if little is False:  # pydicom read it big-endian, and big endian is always explicit VR
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        return
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


def check_pixel_count(ds: Dataset, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse (too_many_pixels) an image whose header declares more than `max_pixels` values (Rows ×
    Columns × samples per pixel × frames), before anything is decoded or allocated for them."""
    rows, columns = _whole(ds, "Rows"), _whole(ds, "Columns")
    samples, frames = _whole(ds, "SamplesPerPixel") or 1, _whole(ds, "NumberOfFrames") or 1
    count = rows * columns * samples * frames
    if count <= max_pixels:
        return
    extra = "".join((
        f" × {samples} samples" if samples > 1 else "",
        f" × {frames} frames" if frames > 1 else "",
    ))
    side = math.isqrt(max_pixels)
    raise DicomRejection(
        "too_many_pixels",
        f"The image is declared {rows:,} × {columns:,} pixels{extra} ({count / 1e6:,.1f} megapixels); the "
        f"largest image accepted is {max_pixels / 1e6:,.1f} megapixels (about {side:,} × {side:,}). No chest "
        "radiograph is this large: the header is damaged or was made to exhaust the server's memory.",
    )


def _whole(ds: Dataset, keyword: str) -> int:
    value = _value(ds, keyword)
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    try:
        return max(int(value), 0) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


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
        _check_codestream(ds, tsyntax)
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


_JPEG2000_SYNTAXES: Final = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K: the same SIZ
})
_JPEG_SYNTAXES: Final = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS: SOF55, laid out as T.81's SOF
})
_CODESTREAM_HEAD: Final = 64 * 1024  # a SOF or SIZ lies within the first bytes of a frame


def _check_codestream(ds: FileDataset, tsyntax: UID) -> None:
    """The decoders size their buffers from the codestream's own header, not from Rows and Columns:
    read that header (without decoding) and refuse the file unless it describes the same image."""
    rows, columns, samples = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    try:
        head, total = _first_frame_head(ds.PixelData)
        if str(tsyntax) == RLELossless:
            header = rle_header(head, total)
            _check_rle(header, rows=rows, columns=columns, samples=samples, allocated=int(ds.BitsAllocated))
            return
        if str(tsyntax) in _JPEG2000_SYNTAXES:
            size = jpeg2000_size(head)
        elif str(tsyntax) in _JPEG_SYNTAXES:
            size = jpeg_size(head)
            _check_jpeg_precision(size, tsyntax)
        else:  # a decoder we have no header reader for: nothing would bound what it allocates
            raise CodestreamError("this platform cannot check the size of such a codestream before decoding")
    except CodestreamError as exc:
        raise DicomRejection(
            "undecodable",
            f"The image data could not be decoded as {_syntax_name(tsyntax)} ({exc}). The file may be "
            "damaged; export it again.",
        ) from exc
    _compare_codestream(size, rows=rows, columns=columns, samples=samples, tsyntax=tsyntax)


# The pydicom plugins that decode JPEG Extended with 12-bit samples: pylibjpeg (with pylibjpeg-libjpeg, GPL, so not
# installed here); GDCM's and Pillow's plugins read 8-bit samples only, and say so only after trying.
_TWELVE_BIT_JPEG_PLUGINS: Final = frozenset({"pylibjpeg"})


def _check_jpeg_precision(size: CodestreamSize, tsyntax: UID) -> None:
    if str(tsyntax) != JPEGExtended12Bit or size.precision <= 8:
        return
    if _TWELVE_BIT_JPEG_PLUGINS & set(get_decoder(tsyntax).available_plugins):
        return
    raise DicomRejection(
        "undecodable",
        f"The image is compressed as {_syntax_name(tsyntax)} with {size.precision}-bit samples, which this platform "
        "cannot decode (it reads 8-bit JPEG Extended only). Export it uncompressed, as JPEG 2000 or as JPEG lossless.",
    )


def _first_frame_head(pixel_data: bytes) -> tuple[bytes, int]:
    """The first bytes of the first frame's codestream (enough for its header) and the length of all
    fragments together (what every frame's codestream has, at most)."""
    head = b""
    total = 0
    try:
        fragments = generate_fragments(pixel_data)
        next(fragments, None)  # the Basic Offset Table, always the first item (PS3.5 A.4)
        for fragment in fragments:
            if len(head) < _CODESTREAM_HEAD:
                head += fragment[:_CODESTREAM_HEAD]
            total += len(fragment)
    except Exception as exc:  # pydicom raises ValueError and others on a broken item structure
        raise CodestreamError(f"its fragments cannot be read: {_short(exc, 80)}") from exc
    if not head:
        raise CodestreamError("it holds no fragment")
    return head, total


def _compare_codestream(size: CodestreamSize, *, rows: int, columns: int, samples: int, tsyntax: UID) -> None:
    name = _syntax_name(tsyntax)
    if (size.rows, size.columns) != (rows, columns):
        raise DicomRejection(
            "not_image_size",
            f"The {name} codestream declares an image of {size.rows:,} × {size.columns:,} pixels, but the "
            f"DICOM header declares {rows:,} × {columns:,}; the header does not describe these pixels.",
        )
    if size.components != samples:
        raise DicomRejection(
            "not_image_size",
            f"The {name} codestream holds {size.components} components, but the DICOM header declares "
            f"{samples} sample(s) per pixel.",
        )
    if size.tiles > MAX_TILES:
        raise DicomRejection(
            "undecodable",
            f"The {name} codestream is cut into {size.tiles:,} tiles; at most {MAX_TILES:,} are accepted. "
            "Export the image again with larger tiles (or one).",
        )


def _check_rle(header: RleHeader, *, rows: int, columns: int, samples: int, allocated: int) -> None:
    expected = samples * allocated // 8
    if len(header.segment_lengths) != expected:
        raise DicomRejection(
            "not_image_size",
            f"The RLE header declares {len(header.segment_lengths)} segments, but {allocated} bits allocated "
            f"and {samples} sample(s) per pixel need {expected}; the header does not describe these pixels.",
        )
    shortest = min(header.segment_lengths)
    if shortest * RLE_MAX_EXPANSION < rows * columns:
        # checked before the decoder allocates for Rows × Columns: no RLE segment expands more than that
        raise DicomRejection(
            "undecodable",
            f"The image data could not be decoded as RLE Lossless: a segment of {shortest:,} bytes cannot "
            f"hold the {rows * columns:,} pixels the header declares. The file may be damaged; export it again.",
        )


# Transfer syntaxes newer than pydicom 3.0's dictionary, named for the refusal message.
_NEWER_SYNTAX_NAMES: Final = MappingProxyType({
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
})


def _syntax_name(tsyntax: UID) -> str:
    name = _NEWER_SYNTAX_NAMES.get(str(tsyntax), tsyntax.name)
    return f"{name} ({tsyntax})" if name != str(tsyntax) else f"an unknown transfer syntax ({tsyntax})"


# Where the decoders' warnings come from. catch_warnings is process-wide: in a threaded server (the DICOM listener)
# another thread's warning may land in this block — e.g. a ResourceWarning of a database connection the garbage
# collector closes — and must not be taken for damage in this image.
_DECODER_PACKAGES = ("pydicom", "pylibjpeg", "openjpeg", "rle", "gdcm", "numpy")


def _from_decoder(w: warnings.WarningMessage) -> bool:
    if issubclass(w.category, ResourceWarning):
        return False
    path = (w.filename or "").replace("\\", "/")
    return any(f"/{package}" in path for package in _DECODER_PACKAGES)


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
        if not _from_decoder(w) or any(benign in message for benign in _BENIGN_DECODE_WARNINGS):
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
