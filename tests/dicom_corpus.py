"""Chest radiographs as DICOM bytes, well-formed and broken, for the ingest tests and the benchmark."""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import tempfile
import zlib

import numpy as np
import pydicom
import pydicom.filewriter
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

# Identifying values planted in every synthetic file.  The de-identification tests search the
# de-identified file's bytes for each of them, so each must be distinctive enough not to turn
# up by chance in pixel data or in a UID.
PHI: dict[str, str] = {
    "patient_name": "Doe^Jane^Quintessa",
    "patient_id": "MRN-0042-7781",
    "birth_date": "19521103",
    "other_patient_id": "OLD-MRN-5555",
    "accession": "ACC-99-123456",
    "institution": "St Elsewhere General Hospital",
    "institution_address": "12 Harbour Road, Springfield",
    "department": "Thoracic Imaging Unit",
    "referring_physician": "House^Gregory",
    "operator": "Tech^Terry",
    "station": "XRAYROOM7",
    "device_serial": "SN-77-ABCDE",
    "study_id": "STUDY-5531",
    "study_date": "20240317",
    "acquisition_datetime": "20240317101530",
    "comments": "Jane Doe follow-up after pneumonia",
    "private_text": "Ward 5B bed 12 Jane Doe",
    "nested_private_text": "Nested private note about Jane",
    "nested_person": "Nested^Nancy",
    "request_person": "Requester^Rita",
    "requested_procedure_id": "RP-8812",
}

# Study- and series-level UIDs shared by the corpus, so two files of "one study" relate.
STUDY_UID = UID("1.2.826.0.1.3680043.10.543.7.1")
SERIES_UID = UID("1.2.826.0.1.3680043.10.543.7.1.1")


def _instance_uid(seed: int, tag: str) -> UID:
    # deterministic, so a corpus rebuilt for the benchmark is the same corpus
    return generate_uid(entropy_srcs=["cxr-trial test corpus", tag, str(seed)])


# ----------------------------------------------------------------------------------- phantom


@functools.lru_cache(maxsize=4)
def chest_phantom(rows: int, columns: int, *, seed: int = 0) -> np.ndarray:
    """A cheap PA chest-like picture, float32 in [0, 1], brighter = more attenuation (MONOCHROME2).

    Dark lung fields, bright mediastinum, heart, spine, ribs and diaphragm, soft tissue between,
    black direct exposure outside the body, and a little noise.  Read-only (it is cached).
    """
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, columns, dtype=np.float32)[None, :]
    img = np.full((rows, columns), 0.04, dtype=np.float32)
    body = (x / 0.93) ** 2 + ((y - 0.15) / 1.2) ** 2 < 1.0
    img[body] = 0.55
    lungs = np.zeros((rows, columns), dtype=bool)
    for cx in (-0.43, 0.43):
        lungs |= ((x - cx) / 0.31) ** 2 + ((y + 0.05) / 0.62) ** 2 < 1.0
    lungs &= body
    img[lungs] = 0.2
    ribs = lungs & (np.sin((y * 7.0 + 1.6 * x * x) * np.pi) > 0.72)
    img[ribs] += 0.12
    heart = ((x - 0.12) / 0.3) ** 2 + ((y - 0.3) / 0.27) ** 2 < 1.0
    mediastinum = (np.abs(x) < 0.13) & (y > -0.75) & (y < 0.55)
    img[(heart | mediastinum) & body] = 0.78
    img[(np.abs(x) < 0.055) & body] = 0.88  # spine
    img[(y > 0.58) & body & ~lungs] = 0.72  # below the diaphragm
    rng = np.random.default_rng(seed)
    img += rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(0.01)
    np.clip(img, 0.0, 1.0, out=img)
    img.setflags(write=False)
    return img


def stored_values(
    rows: int, columns: int, *, bits_stored: int, photometric: str, seed: int = 0, signed: bool = False
) -> np.ndarray:
    """The phantom as stored pixel values: MONOCHROME1 stores the mirror image of MONOCHROME2."""
    top = 2**bits_stored - 1
    values = np.rint(chest_phantom(rows, columns, seed=seed) * np.float32(top * 0.9) + np.float32(top * 0.05))
    if photometric == "MONOCHROME1":
        values = top - values
    if signed:
        return (values - 2 ** (bits_stored - 1)).astype(np.int16)
    return values.astype(np.uint8 if bits_stored <= 8 else np.uint16)


# ----------------------------------------------------------------------------------- well-formed


def radiograph_dataset(
    *,
    rows: int = 600,
    columns: int = 520,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str = "CR",
    seed: int = 0,
    window: bool = True,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    presentation_lut_shape: str | None = None,
    padding_value: int | None = None,
    voi_lut: bool = False,
) -> FileDataset:
    """A single-frame CR or DX chest radiograph full of identifying details (see PHI)."""
    dx = modality == "DX"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation if dx else ComputedRadiographyImageStorage
    ds.SOPInstanceUID = _instance_uid(seed, f"{modality}-{bits_stored}-{photometric}-{rows}x{columns}")
    ds.StudyDate = PHI["study_date"]
    ds.SeriesDate = PHI["study_date"]
    ds.ContentDate = PHI["study_date"]
    ds.StudyTime = "101500"
    ds.ContentTime = "101530"
    ds.AcquisitionDateTime = PHI["acquisition_datetime"]
    ds.AccessionNumber = PHI["accession"]
    ds.Modality = modality
    ds.Manufacturer = "Synthetic Radiography Co"
    ds.InstitutionName = PHI["institution"]
    ds.InstitutionAddress = PHI["institution_address"]
    ds.ReferringPhysicianName = PHI["referring_physician"]
    ds.StationName = PHI["station"]
    ds.StudyDescription = "XR CHEST PA"
    ds.InstitutionalDepartmentName = PHI["department"]
    ds.OperatorsName = PHI["operator"]
    ds.ManufacturerModelName = "Phantom 1"
    ds.ReferencedStudySequence = Sequence([_referenced_study()])
    ds.PatientName = PHI["patient_name"]
    ds.PatientID = PHI["patient_id"]
    ds.PatientBirthDate = PHI["birth_date"]
    ds.PatientSex = "F"
    ds.OtherPatientIDs = PHI["other_patient_id"]
    ds.PatientAge = "071Y"
    ds.BodyPartExamined = "CHEST"
    ds.DeviceSerialNumber = PHI["device_serial"]
    ds.ViewPosition = "PA"
    # Each seed its own study (a case is a study: the images of one study join one case); seed 0 keeps the fixed
    # UIDs. A test that wants two views of one study gives the second the first's Study and Series Instance UIDs.
    ds.StudyInstanceUID = STUDY_UID if seed == 0 else _instance_uid(seed, "study")
    ds.SeriesInstanceUID = SERIES_UID if seed == 0 else _instance_uid(seed, "series")
    ds.StudyID = PHI["study_id"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.ImageComments = PHI["comments"]
    ds.RequestAttributesSequence = Sequence([_request_attributes()])
    # Not where a hospital would put a name: it checks that the walk reaches every depth of a
    # sequence the profile keeps, and removes private blocks there too.
    ds.ViewCodeSequence = Sequence([_view_code()])
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
        ds.AcquisitionContextSequence = Sequence()
    if window:
        top = 2**bits_stored - 1
        center, width = top * 0.5, top * 0.9
        if rescale is not None:
            slope, intercept = rescale
            center = center * slope + intercept
            width = width * slope
        if signed:
            center -= 2 ** (bits_stored - 1)
        ds.WindowCenter = f"{center:.1f}"
        ds.WindowWidth = f"{width:.1f}"
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleIntercept = f"{rescale[1]:g}"
        ds.RescaleType = "US"
    if presentation_lut_shape is not None:
        ds.PresentationLUTShape = presentation_lut_shape
    block = ds.private_block(0x0009, "ACME PACS 1.0", create=True)
    block.add_new(0x10, "LO", PHI["private_text"])
    block.add_new(0x11, "UI", "1.2.826.0.1.3680043.10.543.99.1")

    values = stored_values(rows, columns, bits_stored=bits_stored, photometric=photometric, seed=seed, signed=signed)
    ds.set_pixel_data(values, photometric_interpretation=photometric, bits_stored=bits_stored,
                      generate_instance_uid=False)
    if padding_value is not None:
        ds.PixelPaddingValue = padding_value
    if voi_lut:
        ds.VOILUTSequence = Sequence([_voi_lut_item(bits_stored)])
    return _as_file(ds)


def _referenced_study() -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired)
    item.ReferencedSOPInstanceUID = STUDY_UID
    return item


def _request_attributes() -> Dataset:
    item = Dataset()
    item.RequestedProcedureID = PHI["requested_procedure_id"]
    item.ScheduledProcedureStepID = "SPS-1"
    item.ScheduledPerformingPhysicianName = PHI["request_person"]
    item.ReferencedStudySequence = Sequence([_referenced_study()])
    return item


def _view_code() -> Dataset:
    item = Dataset()
    item.CodeValue = "R-10214"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "postero-anterior"
    modifier = Dataset()
    modifier.CodeValue = "R-102CD"
    modifier.CodingSchemeDesignator = "SRT"
    modifier.CodeMeaning = "erect"
    modifier.PersonName = PHI["nested_person"]
    modifier.ContentDate = PHI["study_date"]
    private = modifier.private_block(0x0011, "ACME NESTED", create=True)
    private.add_new(0x01, "LO", PHI["nested_private_text"])
    item.ViewModifierCodeSequence = Sequence([modifier])
    return item


def _voi_lut_item(bits_stored: int) -> Dataset:
    # A gamma-like LUT over the middle 80 % of the stored range, output 12 bits.
    top = 2**bits_stored - 1
    first = int(top * 0.1)
    entries = int(top * 0.8)
    ramp = np.linspace(0.0, 1.0, entries) ** 0.8
    item = Dataset()
    item.LUTDescriptor = [entries, first, 12]
    item.LUTExplanation = "synthetic gamma"
    item.add_new(0x00283006, "US", [int(v) for v in np.rint(ramp * 4095)])  # LUT Data: US, not OW
    return item


def _as_file(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.SourceApplicationEntityTitle = PHI["station"]
    out = FileDataset("", ds, file_meta=meta, preamble=b"\x00" * 128)
    return out


def to_bytes(ds: FileDataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def radiograph_bytes(**kwargs) -> bytes:
    """radiograph_dataset(**kwargs) written as a DICOM file."""
    return to_bytes(radiograph_dataset(**kwargs))


def compressed_bytes(kind: str, **kwargs) -> bytes:
    """A radiograph compressed losslessly: kind is "rle", "j2k" or "jpeg_lossless" (process 14 SV1)."""
    ds = radiograph_dataset(**kwargs)
    if kind == "rle":
        ds.compress(RLELossless, encoding_plugin=_plugin_for(RLELossless), generate_instance_uid=False)
        return to_bytes(ds)
    if kind == "j2k":
        ds.compress(JPEG2000Lossless, encoding_plugin=_plugin_for(JPEG2000Lossless), generate_instance_uid=False)
        return to_bytes(ds)
    if kind == "jpeg_lossless":
        return jpeg_lossless_from(to_bytes(ds))
    raise ValueError(f"unknown compression {kind!r}")


def _plugin_for(uid: str) -> str:
    # pylibjpeg's RLE encoder is compiled; pydicom's own is pure Python and slow on large images
    from pydicom.pixels import get_encoder

    encoder = get_encoder(uid)
    return "pylibjpeg" if "pylibjpeg" in encoder.available_plugins else ""


def jpeg_lossless_from(native: bytes) -> bytes:
    """Re-encode an uncompressed DICOM file as JPEG lossless process 14 SV1 with GDCM."""
    data = gdcm_transcoded(native, "JPEGLosslessProcess14_1")
    assert pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    return data


def gdcm_transcoded(native: bytes, syntax: str) -> bytes:
    """Re-encode an uncompressed DICOM file with GDCM into `syntax`, a gdcm.TransferSyntax name
    ("JPEGLosslessProcess14_1", "JPEGLSLossless", "JPEGBaselineProcess1", ...).

    pydicom cannot encode these transfer syntaxes; GDCM can, through files on disk only (its Python
    binding has no memory streams), hence the temporary folder.
    """
    import gdcm

    with tempfile.TemporaryDirectory(prefix="cxr-jpegll-") as tmp:
        src, dst = os.path.join(tmp, "in.dcm"), os.path.join(tmp, "out.dcm")
        with open(src, "wb") as fh:
            fh.write(native)
        reader = gdcm.ImageReader()
        reader.SetFileName(src)
        if not reader.Read():
            raise RuntimeError("GDCM could not read the uncompressed file")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError(f"GDCM could not encode {syntax}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(dst)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError(f"GDCM could not write the {syntax} file")
        with open(dst, "rb") as fh:
            return fh.read()


def bare_dataset_bytes(**kwargs) -> bytes:
    """A radiograph written as a bare data set: no preamble, no 'DICM', no file meta (implicit VR)."""
    ds = radiograph_dataset(**kwargs)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, Dataset(ds), implicit_vr=True, little_endian=True)
    return buf.getvalue()


# ----------------------------------------------------------------------------------- real film


def real_cr_film(name: str = "RG1_UNCR.dcm") -> bytes:
    """A real CR chest film from pydicom-data (MONOCHROME1, 1955 × 1841, 15 bits), read offline.

    RG1_UNCR (uncompressed), RG1_J2KR (JPEG 2000 lossless) and RG1_J2KI (JPEG 2000 lossy) are the
    same film.  download=False: pydicom-data ships them in its wheel, nothing is fetched.
    """
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} not found: install the dev extra (pydicom-data)")
    with open(path, "rb") as fh:
        return fh.read()


def with_flipped_polarity(data: bytes) -> bytes:
    """The same pixels stored the other way round: MONOCHROME1 ↔ MONOCHROME2, window mirrored."""
    ds = pydicom.dcmread(io.BytesIO(data))
    top = 2 ** int(ds.BitsStored) - 1
    arr = ds.pixel_array
    flipped = (top - arr.astype(np.int32)).astype(arr.dtype)
    photometric = "MONOCHROME2" if ds.PhotometricInterpretation == "MONOCHROME1" else "MONOCHROME1"
    ds.set_pixel_data(flipped, photometric_interpretation=photometric, bits_stored=int(ds.BitsStored),
                      generate_instance_uid=False)
    if "WindowCenter" in ds:
        ds.WindowCenter = f"{top - float(ds.WindowCenter):g}"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return to_bytes(ds)


# ----------------------------------------------------------------------------------- rejections


def text_file() -> bytes:
    return b"CHEST PA, 17/03/2024\nPatient: Jane Doe\nNo acute cardiopulmonary process.\n" * 20


def png_file() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((chest_phantom(64, 64) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _pixel_data_offset(data: bytes) -> int:
    # Pixel Data is the last top-level element; its tag bytes in little endian
    return data.rindex(b"\xe0\x7f\x10\x00")


def truncated_in_header() -> bytes:
    """A file cut about half-way through its header, inside an element's value."""
    data = radiograph_bytes()
    cut = data.index(PHI["institution"].encode()) + 5
    return data[:cut]


def truncated_in_pixel_data(kind: str | None = None) -> bytes:
    """A file cut two thirds of the way through its (native or compressed) pixel data."""
    data = radiograph_bytes() if kind is None else compressed_bytes(kind)
    start = _pixel_data_offset(data)
    return data[: start + (len(data) - start) * 2 // 3]


def fragment_cut_short(kind: str = "j2k") -> bytes:
    """A compressed file whose codestream lost its last third but is still properly encapsulated."""
    ds = pydicom.dcmread(io.BytesIO(compressed_bytes(kind)))
    frame = b"".join(generate_fragments(ds.PixelData))
    cut = frame[: len(frame) * 2 // 3]
    ds.PixelData = encapsulate([cut + b"\x00" * (len(cut) % 2)])
    return to_bytes(ds)


def no_pixel_data() -> bytes:
    ds = radiograph_dataset()
    del ds.PixelData
    return to_bytes(ds)


def ct_modality() -> bytes:
    ds = radiograph_dataset()
    ds.Modality = "CT"
    ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    return to_bytes(ds)


def multi_frame(frames: int = 3) -> bytes:
    ds = radiograph_dataset()
    one = ds.pixel_array
    ds.set_pixel_data(np.stack([one] * frames), photometric_interpretation="MONOCHROME2", bits_stored=12,
                      generate_instance_uid=False)
    return to_bytes(ds)


def undeclared_second_frame() -> bytes:
    """Two RLE frames in the pixel data while the header declares none: pydicom only warns."""
    ds = radiograph_dataset()
    one = ds.pixel_array
    ds.set_pixel_data(np.stack([one, one]), photometric_interpretation="MONOCHROME2", bits_stored=12,
                      generate_instance_uid=False)
    ds.compress(RLELossless, encoding_plugin=_plugin_for(RLELossless), generate_instance_uid=False)
    del ds.NumberOfFrames
    return to_bytes(ds)


def single_frame_declared() -> bytes:
    """NumberOfFrames present and equal to 1: a valid single image."""
    ds = radiograph_dataset()
    ds.NumberOfFrames = 1
    return to_bytes(ds)


_MPEG2 = "1.2.840.10008.1.2.4.100"
JPEG_XL = "1.2.840.10008.1.2.4.110"


def undecodable_syntax(uid: str = JPEG_XL) -> bytes:
    """Encapsulated garbage under a transfer syntax nothing here decodes (JPEG XL by default)."""
    ds = radiograph_dataset()
    garbage = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    ds.PixelData = encapsulate([b"\xff\x0a" + garbage])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    # pydicom 3.0 refuses to write a transfer syntax it does not know (JPEG XL is newer than it),
    # so write MPEG-2, whose UID has the same length, and swap the UID in the file meta.
    ds.file_meta.TransferSyntaxUID = _MPEG2
    data = to_bytes(ds)
    if uid != _MPEG2:
        if len(uid) != len(_MPEG2):
            raise ValueError("only UIDs as long as MPEG-2's can be swapped in")
        head = data[:1024].replace(_MPEG2.encode(), uid.encode(), 1)
        data = head + data[1024:]
    return data


def burned_in_annotation() -> bytes:
    ds = radiograph_dataset()
    ds.BurnedInAnnotation = "YES"
    return to_bytes(ds)


def not_chest() -> bytes:
    ds = radiograph_dataset()
    ds.BodyPartExamined = "KNEE"
    return to_bytes(ds)


def missing_attribute(keyword: str = "BitsStored") -> bytes:
    ds = radiograph_dataset()
    delattr(ds, keyword)
    return to_bytes(ds)


def rgb_image() -> bytes:
    ds = radiograph_dataset()
    grey = (chest_phantom(600, 520) * 255).astype(np.uint8)
    ds.set_pixel_data(np.stack([grey] * 3, axis=-1), photometric_interpretation="RGB", bits_stored=8,
                      generate_instance_uid=False)
    return to_bytes(ds)


def with_unreadable_value(keyword: str = "RescaleSlope", good: str = "7.77", bad: str = "x.xx") -> bytes:
    """A DS or IS attribute whose bytes are not a number (pydicom refuses to write one, so the
    value is swapped in the written file)."""
    ds = radiograph_dataset()
    setattr(ds, keyword, good)
    data = to_bytes(ds)
    assert len(good) == len(bad) and data.count(good.encode()) == 1
    return data.replace(good.encode(), bad.encode())


def oversized_pixel_data() -> bytes:
    """Native pixel data one row longer than Rows × Columns says."""
    ds = radiograph_dataset()
    ds.PixelData = ds.PixelData + ds.PixelData[: int(ds.Columns) * 2]
    return to_bytes(ds)


def bits_allocated_32() -> bytes:
    """32 bits allocated per pixel (set_pixel_data does not take uint32, hence by hand)."""
    ds = radiograph_dataset()
    ds.PixelData = ds.pixel_array.astype(np.uint32).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 20, 19
    return to_bytes(ds)



# ----------------------------------------------------------------------------------- decompression bombs
#
# Small files that make a decoder allocate gigabytes.  Never decode one in the test process: the
# tests run them in a child process under a memory limit (see test_dicom's bomb tests).


def _blank_jpeg2000(
    width: int, height: int, *, tile: tuple[int, int] | None = None, header_only: bool = False
) -> bytes:
    """A valid JPEG 2000 codestream of a blank 8-bit image, written by hand: every packet is empty,
    so the codestream is a few dozen bytes whatever the size it declares (OpenJPEG decodes a
    40,000² one to 7.8 GB of pixels)."""
    tile_w, tile_h = tile or (width, height)
    across = -(-width // tile_w)
    tiles = across * -(-height // tile_h)
    siz = struct.pack(">HH8IH", 41, 0, width, height, 0, 0, tile_w, tile_h, 0, 0, 1) + bytes([7, 1, 1])
    # COD: LRCP, 1 layer, no MCT; no decomposition (one resolution), 64 × 64 code blocks, 5-3 reversible
    cod = struct.pack(">HBBHBBBBBB", 12, 0, 0, 1, 0, 0, 4, 4, 0, 1)
    qcd = struct.pack(">HBB", 4, 0x40, 0x40)  # no quantization, 2 guard bits, exponent 8
    out = b"\xff\x4f\xff\x51" + siz + b"\xff\x52" + cod + b"\xff\x5c" + qcd
    for index in range(0 if header_only else tiles):
        w = min(tile_w, width - (index % across) * tile_w)
        h = min(tile_h, height - (index // across) * tile_h)
        packets = b"\x00" * (-(-w // 32768) * -(-h // 32768))  # one empty packet per 2^15 precinct
        out += b"\xff\x90" + struct.pack(">HHIBB", 10, index, 14 + len(packets), 0, 1) + b"\xff\x93" + packets
    return out + b"\xff\xd9"


def _with_encapsulated(ds: FileDataset, frame: bytes, transfer_syntax: str) -> bytes:
    ds.PixelData = encapsulate([frame + b"\x00" * (len(frame) % 2)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return to_bytes(ds)


def _bomb_dataset(rows: int, columns: int, *, bits: int = 8) -> FileDataset:
    ds = radiograph_dataset(rows=8, columns=8, bits_stored=bits)
    ds.Rows, ds.Columns = rows, columns
    return ds


def jpeg2000_bomb(side: int = 46_340) -> bytes:
    """About 1 KB: a JPEG 2000 chest film declaring side × side pixels, in its header and its codestream."""
    return _with_encapsulated(_bomb_dataset(side, side), _blank_jpeg2000(side, side), JPEG2000Lossless)


def jpeg2000_lying_header(side: int = 46_340) -> bytes:
    """A header declaring 512 × 512 over a codestream declaring side × side: the decoder believes the codestream."""
    return _with_encapsulated(_bomb_dataset(512, 512), _blank_jpeg2000(side, side), JPEG2000Lossless)


def jpeg2000_tile_bomb() -> bytes:
    """A 67-byte codestream header declaring 2,000 × 2,000 pixels in 62,500 tiles of 8 × 8: OpenJPEG
    allocates about half a gigabyte of tile bookkeeping before it reads a tile (the tiles are left out)."""
    header_only = _blank_jpeg2000(2000, 2000, tile=(8, 8), header_only=True)
    return _with_encapsulated(_bomb_dataset(2000, 2000), header_only, JPEG2000Lossless)


def jpeg2000_mismatch(rows: int = 600, columns: int = 520) -> bytes:
    """A small codestream one row larger than the header's Rows: safe to decode, and refused all the same."""
    return _with_encapsulated(_bomb_dataset(rows, columns), _blank_jpeg2000(columns, rows + 1), JPEG2000Lossless)


def rle_bomb(side: int = 20_000) -> bytes:
    """About 6 MB: an 8-bit RLE chest film of side × side pixels (400 MB decoded), every row as runs of 128."""
    full, rest = divmod(side, 128)
    row = b"\x81\x00" * full + (bytes([257 - rest, 0]) if rest else b"")  # replicate runs (PS3.5 G.3.1)
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return _with_encapsulated(_bomb_dataset(side, side), header + row * side, RLELossless)


def rle_lying_header(declared_rows: int = 600, columns: int = 520) -> bytes:
    """An RLE file declaring declared_rows × columns over one 8 × 8 segment that cannot fill it."""
    ds = radiograph_dataset(rows=8, columns=8, bits_stored=8)
    ds.compress(RLELossless, encoding_plugin=_plugin_for(RLELossless), generate_instance_uid=False)
    ds.Rows, ds.Columns = declared_rows, columns
    return to_bytes(ds)


def native_bomb(side: int = 60_000) -> bytes:
    """An uncompressed file whose header declares side × side pixels over the pixel data of 8 × 8."""
    return to_bytes(_bomb_dataset(side, side))


def deflate_bomb(inflated_mb: int = 1024) -> bytes:
    """About 1 MB: a Deflated Explicit VR Little Endian data set whose pixel data (zeros) inflate to
    `inflated_mb` megabytes; pydicom inflates it whole before it reads a single attribute."""
    side = math.isqrt(inflated_mb * 1_000_000)
    ds = _bomb_dataset(side, side)
    del ds.PixelData
    head = io.BytesIO()
    pydicom.dcmwrite(head, Dataset(ds), implicit_vr=False, little_endian=True)
    # Deflate blocks ended by a full flush do not refer back to what came before them, so the
    # compressed megabyte of zeros can be repeated instead of compressing a gigabyte.
    megabytes, rest = divmod(side * side, 1 << 20)
    body = (_deflated(head.getvalue() + b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", side * side))
            + _deflated(bytes(1 << 20)) * megabytes + _deflated(bytes(rest))
            + zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush())  # the final, empty block
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.543.1"
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(out, meta, enforce_standard=True)
    out.write(body)
    return out.getvalue()


def _deflated(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush(zlib.Z_FULL_FLUSH)


def jp2_wrapped(**kwargs) -> bytes:
    """A JPEG 2000 file whose codestream comes in a JP2 wrapper (boxes), as some encoders write it."""
    import openjpeg

    ds = radiograph_dataset(**kwargs)
    jp2 = openjpeg.encode(ds.pixel_array, bits_stored=int(ds.BitsStored), codec_format=1)
    assert jp2.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
    return _with_encapsulated(ds, jp2, JPEG2000Lossless)


def deflated_bytes(**kwargs) -> bytes:
    """A radiograph written as Deflated Explicit VR Little Endian: the whole data set deflated."""
    ds = radiograph_dataset(**kwargs)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return to_bytes(ds)
