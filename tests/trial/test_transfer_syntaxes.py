"""Every transfer syntax pydicom can write, and the odd headers a PACS forwards, on each way in: trial.dicom alone,
trial.services.receive_image (uploads, the arrival simulator) and the DICOM listener (C-STORE). Each file gets an
answer, a case or a refusal with its code and reason (and its screening-log row), never an exception; a lossless
encoding renders exactly like the original, and a Big Endian film is converted, stored as Explicit VR Little Endian."""
from __future__ import annotations

import functools
import io
import socket
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tests import dicom_corpus as corpus
from trial.dicom import DicomRejection, deidentify, dicom_bytes, read_radiograph, render_display, render_values

SECRET = b"per-trial secret, 32 bytes long!"

# ------------------------------------------------------------------------------------------------ the films


def _read(data: bytes) -> FileDataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _film(seed: int = 1, *, bits: int = 12) -> bytes:
    """A small chest CR as tests.live.image makes it (the corpus's phantom with its identifying details and nested
    public sequences), plus what PACSs add: a private block with a binary value, a private sequence whose items hold
    a private element, a person name and a sequence, an element in a private group with no creator, and a VOI LUT
    whose LUT Data is OW (words, whose byte order a Big Endian file turns round)."""
    ds = corpus.radiograph_dataset(seed=seed, rows=160, columns=140, bits_stored=bits)
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" * 8)
    deeper = Dataset()
    deeper.CodeValue = "X1"
    deeper.PersonName = "Deep^Private"
    item = Dataset()
    item.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x01, "LO", "Jane in a private item")
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.543.99.2"
    item.PersonName = "Private^Sequence"
    item.add_new(0x00431002, "SQ", Sequence([deeper]))
    ds.private_block(0x0019, "ACME SEQ", create=True).add_new(0x20, "SQ", Sequence([item, Dataset()]))
    ds.add_new(0x00190030, "UN", b"\x01\x02\x03\x04")  # (0019,0030): private, and no creator reserved it
    top = 2**bits
    lut = Dataset()
    lut.LUTDescriptor = [top, 0, 12]
    lut.LUTExplanation = "gamma 0.7"
    lut.add_new(0x00283006, "OW", np.rint(np.linspace(0, 1, top) ** 0.7 * 4095).astype("<u2").tobytes())
    ds.VOILUTSequence = Sequence([lut])
    return corpus.to_bytes(ds)


_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_words(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
        elif elem.VR in _WORD_BYTES and elem.tag != 0x7FE00010 and isinstance(elem.value, bytes):
            size = _WORD_BYTES[elem.VR]
            elem.value = np.frombuffer(elem.value, f"<u{size}").astype(f">u{size}").tobytes()


def _big_endian(data: bytes, *, file_meta: bool = True) -> bytes:
    """The film in Explicit VR Big Endian, as an old archive holds it. pydicom writes each element's numbers
    big-endian but leaves bytes values as they are (it cannot know their words), so the pixels and every other OW
    value are turned round here first; 8-bit pixels go as OW words too, swapped in pairs (PS3.5 8.1.1, 8.2)."""
    ds = _read(data)
    arr = ds.pixel_array
    _swap_words(ds)
    raw = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if arr.dtype.itemsize == 1:
        raw = np.frombuffer(raw + b"\x00" * (len(raw) % 2), "<u2").astype(">u2").tobytes()
    ds.PixelData = raw
    ds["PixelData"].VR = "OW"
    buf = io.BytesIO()
    if file_meta:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
    else:  # ACR-NEMA style: no preamble, no file meta
        pydicom.dcmwrite(buf, Dataset(ds), implicit_vr=False, little_endian=False)
    return buf.getvalue()


def _resaved(syntax: str) -> Callable[[bytes], bytes]:
    def build(data: bytes) -> bytes:
        ds = _read(data)
        ds.file_meta.TransferSyntaxUID = syntax
        return corpus.to_bytes(ds)
    return build


def _compressed(syntax: str, **options) -> Callable[[bytes], bytes]:
    def build(data: bytes) -> bytes:
        ds = _read(data)
        ds.compress(syntax, generate_instance_uid=False, **options)
        return corpus.to_bytes(ds)
    return build


def _gdcm(syntax: str) -> Callable[[bytes], bytes]:
    """GDCM's encoder (BSD), for the JPEG processes pydicom cannot encode and as a second Big Endian writer."""
    return lambda data: corpus.gdcm_transcoded(data, syntax)


def _twelve_bit_jpeg_extended(data: bytes) -> bytes:
    """GDCM writes a 12-bit film as JPEG Extended with 16-bit samples in its frame header (SOF1, P = 16), which the
    process does not allow (8 or 12): the header says 12 here, as a conformant encoder's would."""
    encoded = _gdcm("JPEGExtendedProcess2_4")(data)
    sof = encoded.index(b"\xff\xc1\x00\x0b\x10")
    return encoded[:sof + 4] + b"\x0c" + encoded[sof + 5:]


def _with_file_meta(ds: Dataset, meta: FileMetaDataset, *, implicit: bool = False) -> bytes:
    """Preamble, 'DICM', `meta` as given (any transfer syntax, or none) and the data set, little-endian."""
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=False)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, implicit
    write_dataset(body, Dataset(ds))
    return out.getvalue() + body.getvalue()


def _encapsulated_as(syntax: str) -> Callable[[bytes], bytes]:
    """Compressed pixel data (a codestream nobody here decodes) under `syntax`, written byte by byte: pydicom 3.0
    writes no transfer syntax newer than itself."""
    def build(data: bytes) -> bytes:
        ds = _read(data)
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(range(256)) * 8])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = syntax
        return _with_file_meta(ds, meta)
    return build


def _bare(*, implicit: bool) -> Callable[[bytes], bytes]:
    def build(data: bytes) -> bytes:
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, Dataset(_read(data)), implicit_vr=implicit, little_endian=True)
        return buf.getvalue()
    return build


def _no_file_meta(data: bytes) -> bytes:
    return b"\x00" * 128 + b"DICM" + _bare(implicit=False)(data)


def _no_transfer_syntax(data: bytes) -> bytes:
    ds = _read(data)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return _with_file_meta(ds, meta)


def _undefined_lengths(data: bytes) -> bytes:
    """Implicit VR, every sequence and item of undefined length (the private ones then read as sequences, not UN)."""
    ds = _read(data)

    def mark(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
                    mark(item)
    mark(ds)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return corpus.to_bytes(ds)


def _element(tag: int, vr: str, value: bytes, *, little: bool = True) -> bytes:
    """One explicit VR element with a 2-byte length, encoded by hand (pydicom pads what it writes to even length)."""
    order = "<" if little else ">"
    return (np.array([tag >> 16, tag & 0xFFFF], f"{order}u2").tobytes() + vr.encode()
            + np.array([len(value)], f"{order}u2").tobytes() + value)


def _spliced(tag: int, vr: str, value: object, written: bytes, sent: bytes, *, little: bool = True,
             base: Callable[[bytes], bytes] | None = None) -> Callable[[bytes], bytes]:
    """The film with `value` at `tag` (encoded as `written`), those bytes then replaced by `sent` in the file: a value
    pydicom would not write (odd length, more bytes than its multiplicity, not a number)."""
    def build(data: bytes) -> bytes:
        ds = _read(data)
        ds.add_new(tag, vr, value)
        encoded = corpus.to_bytes(ds)
        if base is not None:
            encoded = base(encoded)
        old, new = _element(tag, vr, written, little=little), _element(tag, vr, sent, little=little)
        assert encoded.count(old) == 1, "the value to replace must occur once"
        return encoded.replace(old, new)
    return build


def _with_header(**header) -> Callable[[bytes], bytes]:
    def build(data: bytes) -> bytes:
        ds = _read(data)
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        return corpus.to_bytes(ds)
    return build


def _raw_value(keyword_tag: int, vr: str, raw: bytes, **header) -> Callable[[bytes], bytes]:
    """An element whose bytes are `raw`, as the sending system wrote them (pydicom decodes them when read)."""
    def build(data: bytes) -> bytes:
        ds = _read(data)
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.add_new(keyword_tag, vr, raw)
        return corpus.to_bytes(ds)
    return build


def _length_overruns_the_file(data: bytes) -> bytes:
    """Image Comments' length field says 0xFFF0 bytes: the value swallows everything after it, Pixel Data included."""
    ds = _read(data)
    comment = ds.ImageComments.encode()
    old = _element(0x00204000, "LT", comment + b" " * (len(comment) % 2))
    assert data.count(old) == 1
    return data.replace(old, old[:6] + b"\xf0\xff" + old[8:])


def _item_garbled(replace: slice, by: bytes) -> Callable[[bytes], bytes]:
    """The item of Request Attributes Sequence (a defined length, as pydicom writes it) with its tag (bytes 0–3) or
    its length (4–7) garbled: pydicom reads the sequence within its own length whatever its items say."""
    def build(data: bytes) -> bytes:
        start = data.index(np.array([0x0040, 0x0275], "<u2").tobytes() + b"SQ")
        item = data.index(b"\xfe\xff\x00\xe0", start)
        return data[:item + replace.start] + by + data[item + replace.stop:]
    return build


def _deflate_cut_short(data: bytes) -> bytes:
    deflated = _resaved(DeflatedExplicitVRLittleEndian)(data)
    return deflated[: len(deflated) * 2 // 3]


def _not_deflated(data: bytes) -> bytes:
    """Declared deflated, but its first deflate block has the reserved type (RFC 1951 3.2.3: BTYPE 11), as when the
    data set was never deflated: zlib stops at once. (Damage further in may inflate without error to other bytes:
    raw deflate carries no checksum.)"""
    deflated = bytearray(_resaved(DeflatedExplicitVRLittleEndian)(data))
    # the data set starts after the file meta, whose length (0002,0000) UL gives, after preamble, 'DICM' and itself
    assert deflated[132:138] == b"\x02\x00\x00\x00UL"
    body = 144 + int.from_bytes(deflated[140:144], "little")
    deflated[body] = 0x07  # BFINAL 1, BTYPE 11
    return bytes(deflated)


# ------------------------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Variant:
    """One way a film arrives encoded, and what it must get."""

    build: Callable[[bytes], bytes]
    # "lossless": the same pixels; "lossy": within `tolerance` (RMS of the stored values, as a share of their range);
    # "refused": a DicomRejection with `code`, whose reason holds `phrase`
    outcome: str = "lossless"
    code: str = ""
    phrase: str = ""
    tolerance: float = 0.0
    max_error: int | None = None  # lossy: the largest error per pixel the encoding promises
    bits: int = 12
    stored_syntax: str | None = None  # of the de-identified copy; None: the syntax it arrived in
    wire: str = "file"  # C-STORE: "file" (the file's own data set bytes), "dataset" (decoded, pynetdicom encodes it)
    screened: str = ""  # receive_image and the listener: the eligibility rule that excludes it (pure level: accepted)


def _refused(build, code: str, phrase: str, **kwargs) -> Variant:
    return Variant(build, "refused", code=code, phrase=phrase, **kwargs)


_LE = ExplicitVRLittleEndian
SYNTAXES: dict[str, Variant] = {
    "implicit-vr-little-endian": Variant(_resaved(ImplicitVRLittleEndian)),
    "explicit-vr-little-endian": Variant(lambda data: data),
    "explicit-vr-big-endian": Variant(_big_endian, stored_syntax=_LE),
    "explicit-vr-big-endian-by-gdcm": Variant(_gdcm("ExplicitVRBigEndian"), stored_syntax=_LE),
    "explicit-vr-big-endian-8-bit": Variant(_big_endian, bits=8, stored_syntax=_LE),
    "deflated-explicit-vr-little-endian": Variant(_resaved(DeflatedExplicitVRLittleEndian)),
    "rle-lossless": Variant(_compressed(RLELossless, encoding_plugin="pydicom")),
    "jpeg-ls-lossless": Variant(_compressed(JPEGLSLossless)),
    "jpeg-ls-near-lossless": Variant(_compressed(JPEGLSNearLossless, jls_error=2), "lossy", tolerance=0.002,
                                     max_error=2),
    "jpeg-2000-lossless": Variant(_compressed(JPEG2000Lossless)),
    "jpeg-2000": Variant(_compressed(JPEG2000, j2k_cr=[10]), "lossy", tolerance=0.02),
    "jpeg-lossless-sv1": Variant(_gdcm("JPEGLosslessProcess14_1")),
    "jpeg-lossless-process-14": Variant(_gdcm("JPEGLosslessProcess14")),
    "jpeg-baseline-8-bit": Variant(_gdcm("JPEGBaselineProcess1"), "lossy", tolerance=0.02, bits=8),
    "jpeg-extended-8-bit": Variant(_gdcm("JPEGExtendedProcess2_4"), "lossy", tolerance=0.02, bits=8),
    # what no decoder here reads: refused, the syntax named
    "jpeg-extended-12-bit": _refused(_twelve_bit_jpeg_extended, "undecodable",
                                     "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) with 12-bit samples, "
                                     "which this platform cannot decode"),
    "jpeg-extended-16-bit-by-gdcm": _refused(_gdcm("JPEGExtendedProcess2_4"), "undecodable",
                                             "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) with 16-bit "
                                             "samples"),
    "jpeg-xl": _refused(_encapsulated_as("1.2.840.10008.1.2.4.110"), "undecodable", "JPEG XL Lossless"),
    "mpeg2": _refused(_encapsulated_as("1.2.840.10008.1.2.4.100"), "undecodable", "MPEG2 Main Profile"),
    "deflated-image-frame": _refused(_encapsulated_as("1.2.840.10008.1.2.8.1"), "undecodable",
                                     "Deflated Image Frame Compression"),
    "private-syntax": _refused(_encapsulated_as("1.2.826.0.1.3680043.10.543.77"), "undecodable",
                               "unknown transfer syntax (1.2.826.0.1.3680043.10.543.77)", wire=""),
}

ODD_HEADERS: dict[str, Variant] = {
    "no-preamble": Variant(lambda data: data[128:], wire="dataset"),
    "no-preamble-no-dicm": Variant(lambda data: data[132:], wire="dataset"),
    "deflated-no-preamble-no-dicm": Variant(lambda data: _resaved(DeflatedExplicitVRLittleEndian)(data)[132:],
                                            wire="dataset"),
    "bare-implicit-vr": Variant(_bare(implicit=True), wire="dataset"),
    "bare-explicit-vr": Variant(_bare(implicit=False), wire="dataset"),
    "bare-big-endian": Variant(functools.partial(_big_endian, file_meta=False), stored_syntax=_LE, wire="dataset"),
    "dicm-but-no-file-meta": Variant(_no_file_meta, wire="dataset"),
    "file-meta-without-transfer-syntax": Variant(_no_transfer_syntax, wire="dataset"),
    "undefined-length-sequences": Variant(_undefined_lengths),
    # Protocol Name (0018,1030) of 5 bytes; Patient's Weight (0010,1030), not a number, is dropped
    "odd-length-value": Variant(_spliced(0x00181030, "LO", "CHESTX", b"CHESTX", b"CHEST")),
    "odd-length-value-big-endian": Variant(_spliced(0x00181030, "LO", "CHESTX", b"CHESTX", b"CHEST", little=False,
                                                    base=_big_endian), stored_syntax=_LE),
    "unreadable-number": Variant(_spliced(0x00101030, "DS", "77.7", b"77.7", b"x.xx")),
    "invalid-utf-8-name": Variant(_raw_value(0x00100010, "PN", b"Doe^J\xe9ne\xff", SpecificCharacterSet="ISO_IR 192")),
    "unknown-character-set": Variant(_with_header(SpecificCharacterSet="ISO_IR 999")),
    "control-characters": Variant(_raw_value(0x00080080, "LO", b"St\x00Elsewhere\x07\x1b")),
    "garbled-uid": Variant(_spliced(0x00200052, "UI", "1.2.826.0.1.99", b"1.2.826.0.1.99", b"1.2.abc.\xff.4\x00")),
    "garbled-dates-and-age": Variant(_with_header(StudyDate="2024-13-45", SeriesDate="", ContentDate="2024",
                                                  AcquisitionDateTime="soon", PatientBirthDate="yesterday",
                                                  PatientAge="7?Y"), screened="age_unknown"),
    "item-tag-garbled": Variant(_item_garbled(slice(0, 4), b"\xfe\xff\x0d\xe0")),
    "item-length-garbled": Variant(_item_garbled(slice(4, 8), b"\x02\x00\x00\x00")),
    "unreadable-rescale-slope": _refused(_spliced(0x00281053, "DS", "1.00", b"1.00", b"x.xx"), "invalid_attribute",
                                         "Rescale Slope (0028,1053) cannot be read"),
    "rows-with-two-values": _refused(_spliced(0x00280010, "US", 160, b"\xa0\x00", b"\xa0\x00\xa0\x00"),
                                     "invalid_attribute", "Rows (0028,0010)"),
    "length-overruns-the-file": _refused(_length_overruns_the_file, "truncated", "cut short"),
    "deflate-stream-cut-short": _refused(_deflate_cut_short, "truncated", "ends before the deflate stream does"),
    "not-deflated-as-declared": _refused(_not_deflated, "not_dicom", "could not be read"),
    "truncated-in-header": _refused(lambda data: data[:700], "truncated", "ends inside the DICOM header",
                                    wire=""),
    "truncated-in-pixels": _refused(lambda data: data[:-999], "truncated", "ends inside the image data"),
    "zero-length": _refused(lambda data: b"", "not_dicom", "The file is empty", wire=""),
}

VARIANTS = {**SYNTAXES, **ODD_HEADERS}


@functools.cache
def _original(bits: int) -> bytes:
    return _film(1, bits=bits)


@functools.cache
def _encoded(name: str) -> bytes:
    variant = VARIANTS[name]
    return variant.build(_original(variant.bits))


@functools.cache
def _reference(bits: int):
    """The original film read and rendered: what every lossless encoding must give again."""
    ds = read_radiograph(_original(bits))
    return ds.pixel_array.copy(), _png_pixels(render_display(ds).png), _png_pixels(render_values(ds).png)


def _png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int32)


def _assert_same_image(arr: np.ndarray, variant: Variant) -> None:
    """Lossless: the original's values exactly. Lossy: within the variant's tolerance (and its bound per pixel)."""
    original = _reference(variant.bits)[0]
    assert arr.shape == original.shape
    if variant.outcome == "lossless":
        assert np.array_equal(arr, original), "a lossless encoding must decode to the original values"
        return
    error = arr.astype(np.int64) - original.astype(np.int64)
    span = float(original.max()) - float(original.min())
    assert np.sqrt(np.mean(error.astype(np.float64) ** 2)) <= variant.tolerance * span
    if variant.max_error is not None:
        assert np.abs(error).max() <= variant.max_error


def _assert_rendered_like_the_original(ds: FileDataset, variant: Variant) -> None:
    _, display, values = _reference(variant.bits)
    shown, viewer = _png_pixels(render_display(ds).png), _png_pixels(render_values(ds).png)
    assert shown.shape == display.shape and viewer.shape == values.shape
    if variant.outcome == "lossless":
        assert np.array_equal(shown, display) and np.array_equal(viewer, values)
    else:  # the display is 8-bit: a lossy encoding moves it by a few levels on average at most
        assert np.abs(shown - display).mean() <= 3.0


def _stored_syntax(variant: Variant, arrived: str) -> str:
    return variant.stored_syntax or arrived


# ------------------------------------------------------------------------------------------------ (a) trial.dicom


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_encoding_is_read_rendered_and_deidentified_or_refused_by_name(name):
    variant = VARIANTS[name]
    data = _encoded(name)
    if variant.outcome == "refused":
        with pytest.raises(DicomRejection) as refused:
            read_radiograph(data)
        assert refused.value.code == variant.code
        assert variant.phrase in refused.value.reason
        return
    ds = read_radiograph(data)
    _assert_same_image(ds.pixel_array, variant)
    _assert_rendered_like_the_original(ds, variant)
    clean, _ = deidentify(ds, case_code="C0001", uid_secret=SECRET)
    stored = dicom_bytes(clean)
    back = read_radiograph(stored)
    assert back.file_meta.TransferSyntaxUID == _stored_syntax(variant, ds.file_meta.TransferSyntaxUID)
    assert np.array_equal(back.pixel_array, ds.pixel_array), "de-identification changes no pixel"
    _assert_rendered_like_the_original(back, variant)
    assert not [elem.tag for elem in back.iterall() if elem.tag.is_private]
    assert corpus.PHI["patient_name"].encode() not in stored and b"Private^Sequence" not in stored


def test_the_big_endian_film_really_is_big_endian():
    # Numbers and pixel words most significant byte first: Rows (0028,0010) US 160, the first pixel of the image.
    data = _encoded("explicit-vr-big-endian")
    assert b"\x00\x28\x00\x10US\x00\x02\x00\xa0" in data
    original = _reference(12)[0]
    assert original.astype(">u2").tobytes() in data
    assert _read(data).file_meta.TransferSyntaxUID == ExplicitVRBigEndian


def test_a_big_endian_film_is_stored_little_endian_with_its_lut_words_turned_round():
    ds = read_radiograph(_encoded("explicit-vr-big-endian"))
    clean, _ = deidentify(ds, case_code="C0001", uid_secret=SECRET)
    stored = dicom_bytes(clean)
    assert b"\x28\x00\x10\x00US\x02\x00\xa0\x00" in stored  # Rows, least significant byte first
    back = pydicom.dcmread(io.BytesIO(stored))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back["PixelData"].VR == "OW"
    lut = _read(_original(12)).VOILUTSequence[0].LUTData
    assert back.VOILUTSequence[0].LUTData == lut  # the same OW bytes as the little-endian original's
    assert back.PixelData == _reference(12)[0].astype("<u2").tobytes()


def test_an_eight_bit_big_endian_film_is_stored_as_bytes_in_pixel_order():
    ds = read_radiograph(_encoded("explicit-vr-big-endian-8-bit"))
    back = pydicom.dcmread(io.BytesIO(dicom_bytes(deidentify(ds, case_code="C0001", uid_secret=SECRET)[0])))
    assert back["PixelData"].VR == "OB"
    assert back.PixelData[: 160 * 140] == _reference(8)[0].tobytes()


def test_the_real_cr_film_in_big_endian_renders_exactly_like_the_original():
    # pydicom-data's RG1 (1955 × 1841, 15 bits stored, MONOCHROME1): a real plate, as an old archive would send it
    original = corpus.real_cr_film("RG1_UNCR.dcm")
    ds, reference = read_radiograph(_big_endian(original)), read_radiograph(original)
    assert np.array_equal(ds.pixel_array, reference.pixel_array)
    assert render_display(ds).png == render_display(reference).png
    back = read_radiograph(dicom_bytes(deidentify(ds, case_code="C0001", uid_secret=SECRET)[0]))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, reference.pixel_array)


def test_a_deflated_data_set_without_preamble_is_measured_before_it_is_inflated():
    # 100 MB of zeros in a 100 KB file: refused on the way (a megabyte at a time), as with its preamble
    bomb = corpus.deflate_bomb(inflated_mb=100)
    for data in (bomb, bomb[128:], bomb[132:]):
        with pytest.raises(DicomRejection, match="inflates to more than") as refused:
            read_radiograph(data, max_pixels=1_000_000)
        assert refused.value.code == "too_large"


def test_a_garbled_character_set_or_name_never_reaches_the_stored_copy():
    for name in ("invalid-utf-8-name", "unknown-character-set", "control-characters", "garbled-uid"):
        ds = read_radiograph(_encoded(name))
        stored = dicom_bytes(deidentify(ds, case_code="C0001", uid_secret=SECRET)[0])
        assert b"J\xe9ne" not in stored and b"Elsewhere" not in stored and b"1.2.abc" not in stored, name
        assert pydicom.dcmread(io.BytesIO(stored)).PatientName == "C0001"


# ------------------------------------------------------------------------------------------------ (b) receive_image


@pytest.fixture
def live(investigator, make_user):
    from tests.live import open_trial

    return open_trial(investigator=investigator, make_user=make_user, code="syntax")


def _assert_answered(*, trial, name: str, variant: Variant, source: str):
    """What the trial holds after one arrival: the case (its stored copy re-read, rendered, its viewer image
    written) or no case and the screening-log row of the refusal."""
    from trial.models import Case, ScreeningEntry

    entry = ScreeningEntry.objects.get(trial=trial)
    assert entry.source == source
    if variant.outcome == "refused" or variant.screened:
        expected = variant.screened or f"dicom:{variant.code}"
        assert (entry.outcome, entry.code) == ("not_enrolled", expected), name
        assert variant.phrase in entry.reason
        assert not Case.objects.filter(trial=trial).exists()
        return entry
    case = Case.objects.get(trial=trial)
    assert entry.outcome == "enrolled" and entry.case == case
    with case.dicom.open("rb") as fh:
        stored = read_radiograph(fh.read())
    arrived = read_radiograph(_encoded(name)).file_meta.TransferSyntaxUID  # what trial.dicom read it as
    assert stored.file_meta.TransferSyntaxUID == _stored_syntax(variant, arrived)
    _assert_same_image(stored.pixel_array, variant)
    _assert_rendered_like_the_original(stored, variant)
    assert case.values_image, "the viewer's values image is made from the stored copy"
    assert case.rows == 160 and case.columns == 140
    return entry


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(VARIANTS))
def test_receive_image_gives_a_case_or_a_logged_refusal(live, name):
    from tests.live import arrive
    from trial.errors import CaseRejected, NotEnrolled

    variant = VARIANTS[name]
    try:
        arrive(live.trial, live.sites[0], _encoded(name), source="simulator")
    except CaseRejected as refused:
        assert variant.outcome == "refused", f"{name} refused: {refused.message}"
        assert refused.code == variant.code and variant.phrase in refused.message
    except NotEnrolled as screened:
        assert screened.code == variant.screened, f"{name} not enrolled: {screened.message}"
    else:
        assert variant.outcome != "refused" and not variant.screened
    _assert_answered(trial=live.trial, name=name, variant=variant, source="simulator")


# ------------------------------------------------------------------------------------------------ (c) C-STORE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def wire(investigator, make_user, _media, monkeypatch):
    """The real listener on a free port, for a live trial whose site PACS_A sends; every file the listener hands to
    trial.services is kept, to check what pynetdicom gave it."""
    from tests.live import open_trial
    from trial import listener, services

    live = open_trial(investigator=investigator, make_user=make_user, code="wire")
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=["PACS_A"])
    handed: list[bytes] = []
    store = listener.store

    def keep(*, data: bytes, **kwargs):
        handed.append(data)
        return store(data=data, **kwargs)

    monkeypatch.setattr(listener, "store", keep)
    port = _free_port()
    server = listener.serve(host="127.0.0.1", port=port, block=False)
    yield live, port, handed
    server.shutdown()


def _c_store(port: int, data: bytes, *, wire: str, tmp_path, monkeypatch):
    """Send one film as a PACS would, proposing its own transfer syntax only (no conversion on the way).

    "file": the data set's bytes exactly as in the file (pynetdicom's chunked sending reads them from disk), so a
    Big Endian or deflated data set, an odd-length value or a cut-short image crosses the wire as it is. "dataset": a
    file with no usable file meta has no transfer syntax of its own on the wire; pydicom reads it and pynetdicom
    encodes it in the encoding pydicom found (for the Big Endian one, Big Endian: pynetdicom encodes a data set read
    big-endian as it was read)."""
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import ComputedRadiographyImageStorage

    if wire == "file":
        path = tmp_path / "film.dcm"
        path.write_bytes(data)
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        to_send, syntax = path, read_file_meta_info(path).TransferSyntaxUID
    else:  # read as the platform reads it, which gives it the transfer syntax of the encoding found
        to_send = read_radiograph(data)
        syntax = to_send.file_meta.TransferSyntaxUID
    ae = AE(ae_title="PACS_A")
    ae.add_requested_context(ComputedRadiographyImageStorage, [syntax])
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAL")
    assert assoc.is_established
    try:
        return syntax, assoc.send_c_store(to_send)
    finally:
        assoc.release()


WIRE = [name for name, variant in VARIANTS.items() if variant.wire]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", WIRE)
def test_c_store_answers_each_encoding_with_success_or_a_failure_and_its_reason(wire, name, tmp_path, monkeypatch):
    from trial.listener import CANNOT_UNDERSTAND, COMMENT_LIMIT, SUCCESS

    live, port, handed = wire
    variant = VARIANTS[name]
    syntax, status = _c_store(port, _encoded(name), wire=variant.wire, tmp_path=tmp_path, monkeypatch=monkeypatch)
    # the listener was handed the data set in the syntax it was sent in, not something pynetdicom converted
    assert len(handed) == 1
    (tmp_path / "handed.dcm").write_bytes(handed[0])
    assert read_file_meta_info(tmp_path / "handed.dcm").TransferSyntaxUID == syntax
    entry = _assert_answered(trial=live.trial, name=name, variant=variant, source="dicom")
    if variant.outcome == "refused":
        # the reason of the screening log, as far as an Error Comment (LO) holds it; a syntax is named within it
        assert status.Status == CANNOT_UNDERSTAND
        assert str(status.ErrorComment) == entry.reason[:COMMENT_LIMIT].rstrip()  # LO: trailing spaces are padding
        if name in SYNTAXES:
            assert variant.phrase.split(" (")[0] in str(status.ErrorComment)
    else:
        assert status.Status == SUCCESS, str(status.get("ErrorComment", ""))


NATIVE = ["implicit-vr-little-endian", "explicit-vr-little-endian", "explicit-vr-big-endian",
          "explicit-vr-big-endian-8-bit", "deflated-explicit-vr-little-endian"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", NATIVE)
def test_c_store_of_a_data_set_pynetdicom_encodes_itself(wire, name, tmp_path, monkeypatch):
    # The way most senders use pynetdicom: a decoded data set, encoded (and deflated) by pynetdicom for the context
    live, port, handed = wire
    syntax, status = _c_store(port, _encoded(name), wire="dataset", tmp_path=tmp_path, monkeypatch=monkeypatch)
    assert status.Status == 0x0000, str(status.get("ErrorComment", ""))
    (tmp_path / "handed.dcm").write_bytes(handed[0])
    assert read_file_meta_info(tmp_path / "handed.dcm").TransferSyntaxUID == syntax
    _assert_answered(trial=live.trial, name=name, variant=VARIANTS[name], source="dicom")


@pytest.mark.django_db(transaction=True)
def test_a_private_transfer_syntax_is_refused_at_negotiation(wire):
    from pynetdicom import AE
    from pynetdicom.sop_class import ComputedRadiographyImageStorage

    _, port, handed = wire
    ae = AE(ae_title="PACS_A")
    ae.add_requested_context(ComputedRadiographyImageStorage, ["1.2.826.0.1.3680043.10.543.77"])
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAL")
    # the listener rejects the one context proposed (transfer syntax not supported); pynetdicom then aborts
    assert assoc.is_aborted and not assoc.is_established
    assert [cx.result for cx in assoc.rejected_contexts] == [0x04]
    assert not handed


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(SYNTAXES))
def test_stow_rs_answers_each_encoding_with_a_case_or_a_failure_and_its_reason(name, live_server, investigator,
                                                                               make_user, _media):
    """The other way in from a PACS: the same film in each encoding as one part of a STOW-RS request."""
    import requests

    from tests.live import open_trial
    from trial import services

    live = open_trial(investigator=investigator, make_user=make_user, code="stow-syntax")
    _, key = services.issue_sender_token(site=live.sites[0], by=investigator)
    boundary = "syntax-test"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + _encoded(name)
            + f"\r\n--{boundary}--\r\n".encode())
    response = requests.post(live_server.url + "/dicomweb/studies", data=body, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Authorization": f"Bearer {key}", "Accept": "application/dicom+json"})
    variant = VARIANTS[name]
    _assert_answered(trial=live.trial, name=name, variant=variant, source="stow-rs")
    if variant.outcome == "refused":
        assert response.status_code == 409, response.content
        (failed,) = response.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0xC000]
    else:
        assert response.status_code == 200, response.content
        assert len(response.json()["00081199"]["Value"]) == 1
