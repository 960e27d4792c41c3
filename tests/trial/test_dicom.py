"""Reading, refusing, de-identifying and rendering chest radiographs (trial/dicom/, no Django)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests import dicom_corpus as corpus
from trial import dicom
from trial.dicom import (
    BASIC_PROFILE,
    REJECTION_CODES,
    DeidRecord,
    DicomRejection,
    deidentify,
    dicom_bytes,
    image_summary,
    read_radiograph,
    render_display,
)

SECRET = b"per-trial secret, 32 bytes long!"


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "L"
    return np.asarray(image, dtype=np.int16)


def region_mean(image: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    h, w = image.shape
    return float(image[int(h * rows[0]) : int(h * rows[1]), int(w * cols[0]) : int(w * cols[1])].mean())


def assert_chest_polarity(image: np.ndarray) -> None:
    """Lungs dark, mediastinum and spine bright: what a reader expects of a PA chest film."""
    centre = region_mean(image, (0.2, 0.6), (0.45, 0.55))
    right_lung = region_mean(image, (0.2, 0.45), (0.22, 0.35))
    left_lung = region_mean(image, (0.2, 0.45), (0.65, 0.78))
    assert centre > right_lung + 40
    assert centre > left_lung + 40


@pytest.fixture(scope="module")
def real_film() -> pydicom.Dataset:
    return read_radiograph(corpus.real_cr_film("RG1_UNCR.dcm"))


@pytest.fixture(scope="module")
def real_film_rendered(real_film):
    return render_display(real_film)


@pytest.fixture(scope="module")
def synthetic() -> bytes:
    return corpus.radiograph_bytes(modality="DX")


@pytest.fixture(scope="module")
def deidentified(synthetic):
    ds = read_radiograph(synthetic)
    clean, record = deidentify(ds, case_code="CXR-0001", uid_secret=SECRET)
    return ds, clean, record, dicom_bytes(clean)


# ------------------------------------------------------------------------- the real CR film


def test_real_cr_film_is_accepted_with_its_pixels_decoded(real_film):
    assert real_film.Modality == "CR"
    assert real_film.pixel_array.shape == (1955, 1841)


def test_real_film_in_jpeg2000_lossless_decodes_to_the_same_pixels(real_film):
    j2k = read_radiograph(corpus.real_cr_film("RG1_J2KR.dcm"))
    assert np.array_equal(j2k.pixel_array, real_film.pixel_array)


def test_real_film_in_jpeg2000_lossy_is_accepted_and_rendered():
    ds = read_radiograph(corpus.real_cr_film("RG1_J2KI.dcm"))
    rendered = render_display(ds)
    assert (rendered.width, rendered.height) == (1841, 1955)
    assert_chest_polarity(pixels(rendered.png))


def test_real_monochrome1_film_renders_lungs_dark_and_mediastinum_bright(real_film_rendered):
    assert_chest_polarity(pixels(real_film_rendered.png))


def test_real_film_and_its_monochrome2_copy_render_alike(real_film_rendered):
    flipped = read_radiograph(corpus.with_flipped_polarity(corpus.real_cr_film()))
    assert flipped.PhotometricInterpretation == "MONOCHROME2"
    difference = np.abs(pixels(render_display(flipped).png) - pixels(real_film_rendered.png))
    assert difference.max() <= 1  # a mirrored window rounds half-way values the other way


def test_real_film_uses_its_own_window(real_film_rendered):
    assert real_film_rendered.source == "file window"
    assert (real_film_rendered.window_center, real_film_rendered.window_width) == (15000.0, 30000.0)


# ------------------------------------------------------------------------- synthetic acceptance


@pytest.mark.parametrize("window", ["file", "auto"])
def test_monochrome1_and_monochrome2_of_the_same_anatomy_render_alike(window):
    mono1 = render_display(read_radiograph(corpus.radiograph_bytes(photometric="MONOCHROME1")), window=window)
    mono2 = render_display(read_radiograph(corpus.radiograph_bytes(photometric="MONOCHROME2")), window=window)
    assert np.abs(pixels(mono1.png) - pixels(mono2.png)).max() <= 1


@pytest.mark.parametrize("bits_stored", [8, 10, 12, 14, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_every_bit_depth_is_accepted_and_rendered_with_chest_polarity(bits_stored, photometric):
    ds = read_radiograph(corpus.radiograph_bytes(bits_stored=bits_stored, photometric=photometric))
    assert int(ds.BitsAllocated) == (8 if bits_stored == 8 else 16)
    assert_chest_polarity(pixels(render_display(ds).png))


def test_eight_and_sixteen_bit_copies_of_the_same_anatomy_render_alike():
    eight = render_display(read_radiograph(corpus.radiograph_bytes(bits_stored=8)), window="auto")
    sixteen = render_display(read_radiograph(corpus.radiograph_bytes(bits_stored=16)), window="auto")
    assert np.abs(pixels(eight.png) - pixels(sixteen.png)).mean() < 2.0


def test_signed_pixels_render_like_unsigned():
    unsigned = render_display(read_radiograph(corpus.radiograph_bytes(bits_stored=16)))
    signed = render_display(read_radiograph(corpus.radiograph_bytes(bits_stored=16, signed=True)))
    assert np.abs(pixels(signed.png) - pixels(unsigned.png)).max() <= 1


def test_rescale_is_applied_before_the_window():
    plain = render_display(read_radiograph(corpus.radiograph_bytes()))
    rescaled = render_display(read_radiograph(corpus.radiograph_bytes(rescale=(0.5, -100.0))))
    assert rescaled.window_center == pytest.approx(2047.5 * 0.5 - 100, abs=0.1)
    assert np.abs(pixels(rescaled.png) - pixels(plain.png)).max() <= 1


@pytest.mark.parametrize("kind", ["rle", "j2k", "jpeg_lossless"])
def test_lossless_compressed_files_render_exactly_like_uncompressed(kind):
    ds = read_radiograph(corpus.compressed_bytes(kind, bits_stored=14, photometric="MONOCHROME1"))
    reference = read_radiograph(corpus.radiograph_bytes(bits_stored=14, photometric="MONOCHROME1"))
    assert np.array_equal(ds.pixel_array, reference.pixel_array)
    assert np.array_equal(pixels(render_display(ds).png), pixels(render_display(reference).png))


def test_jpeg_lossless_file_really_is_process_14_selection_value_1():
    ds = read_radiograph(corpus.compressed_bytes("jpeg_lossless"))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"


def test_bare_data_set_without_preamble_is_accepted():
    data = corpus.bare_dataset_bytes()
    assert data[128:132] != b"DICM"
    assert read_radiograph(data).pixel_array.shape == (600, 520)


def test_number_of_frames_equal_to_one_is_accepted():
    assert read_radiograph(corpus.single_frame_declared()).NumberOfFrames == 1


def test_a_path_is_read_like_bytes(tmp_path, synthetic):
    path = tmp_path / "film.dcm"
    path.write_bytes(synthetic)
    assert read_radiograph(path).SOPInstanceUID == read_radiograph(synthetic).SOPInstanceUID


def test_image_summary_describes_the_image(real_film):
    assert image_summary(real_film) == {
        "modality": "CR",
        "rows": 1955,
        "columns": 1841,
        "bits_stored": 15,
        "photometric": "MONOCHROME1",
        "view_position": "PA",
        "body_part": "CHEST",
        "transfer_syntax": "Explicit VR Little Endian",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    }


# ------------------------------------------------------------------------- windowing


def test_file_without_window_gets_a_percentile_window():
    rendered = render_display(read_radiograph(corpus.radiograph_bytes(window=False)))
    assert rendered.source == "auto percentile"
    # the 0.5–99.5 % window of the phantom lies inside its stored range (12 bits)
    assert (0 < rendered.window_center - rendered.window_width / 2
            < rendered.window_center + rendered.window_width / 2 < 4095)


def test_auto_option_ignores_the_file_window():
    rendered = render_display(read_radiograph(corpus.radiograph_bytes()), window="auto")
    assert rendered.source == "auto percentile"


def test_file_window_is_used_and_reported_in_modality_units():
    rendered = render_display(read_radiograph(corpus.radiograph_bytes()))
    assert rendered.source == "file window"
    assert (rendered.window_center, rendered.window_width) == (2047.5, 3685.5)


def test_a_file_window_that_misses_the_image_falls_back_to_auto():
    ds = read_radiograph(corpus.radiograph_bytes())
    ds.WindowCenter, ds.WindowWidth = "60000", "100"
    assert render_display(ds).source == "auto percentile"


def test_voi_lut_sequence_is_preferred_to_the_window():
    rendered = render_display(read_radiograph(corpus.radiograph_bytes(voi_lut=True)))
    assert rendered.source == "file VOI LUT"
    assert_chest_polarity(pixels(rendered.png))


def test_voi_lut_of_an_implicit_vr_file_is_read_whatever_its_lut_data_vr():
    # implicit VR leaves LUT Data "US or OW": pydicom hands it over as raw bytes
    implicit = render_display(read_radiograph(corpus.bare_dataset_bytes(voi_lut=True)))
    explicit = render_display(read_radiograph(corpus.radiograph_bytes(voi_lut=True)))
    assert implicit.source == "file VOI LUT"
    assert np.array_equal(pixels(implicit.png), pixels(explicit.png))


def test_presentation_lut_inverse_on_monochrome1_is_not_a_second_inversion():
    plain = render_display(read_radiograph(corpus.radiograph_bytes(photometric="MONOCHROME1")))
    inverse = render_display(
        read_radiograph(corpus.radiograph_bytes(photometric="MONOCHROME1", presentation_lut_shape="INVERSE"))
    )
    assert np.array_equal(pixels(inverse.png), pixels(plain.png))


def test_presentation_lut_inverse_inverts_a_monochrome2_image():
    plain = pixels(render_display(read_radiograph(corpus.radiograph_bytes())).png)
    inverse = pixels(render_display(read_radiograph(corpus.radiograph_bytes(presentation_lut_shape="INVERSE"))).png)
    assert np.abs((255 - inverse) - plain).max() <= 1


def test_padding_is_black_and_left_out_of_the_auto_window():
    # 4095 is the brightest value: as padding it must not stretch the window nor show white
    without = render_display(read_radiograph(corpus.radiograph_bytes(window=False)))
    ds = read_radiograph(corpus.radiograph_bytes(window=False, padding_value=4095))
    ds.pixel_array[:50, :] = 4095  # pydicom's cached array is what gets rendered
    padded = render_display(ds)
    assert pixels(padded.png)[:50, :].max() == 0
    assert padded.window_center == pytest.approx(without.window_center, abs=2)


# ------------------------------------------------------------------------- size


def test_long_side_is_reduced_to_max_side_and_aspect_ratio_kept():
    ds = read_radiograph(corpus.radiograph_bytes(rows=3000, columns=2400))
    rendered = render_display(ds, max_side=2048)
    assert (rendered.height, rendered.width) == (2048, 1638)
    assert pixels(rendered.png).shape == (2048, 1638)


def test_small_image_is_not_enlarged(real_film_rendered):
    assert (real_film_rendered.width, real_film_rendered.height) == (1841, 1955)


def test_thumbnail_long_side_is_thumb_side(real_film_rendered):
    thumb = Image.open(io.BytesIO(real_film_rendered.thumbnail_png))
    assert thumb.mode == "L"
    assert max(thumb.size) == 256
    assert thumb.size == (round(1841 * 256 / 1955), 256)


def test_thumbnail_side_can_be_chosen(real_film):
    thumb = Image.open(io.BytesIO(render_display(real_film, thumb_side=128).thumbnail_png))
    assert max(thumb.size) == 128


# ------------------------------------------------------------------------- refusals

REFUSALS = [
    pytest.param(corpus.text_file, "not_dicom", "This is a text file, not a DICOM file.", id="text"),
    pytest.param(corpus.png_file, "not_dicom", "This is a PNG image, not a DICOM file.", id="png"),
    pytest.param(lambda: b"", "not_dicom", "The file is empty.", id="empty"),
    pytest.param(lambda: b"\x00" * 64, "truncated", "inside the DICOM preamble", id="cut-in-preamble"),
    pytest.param(corpus.truncated_in_header, "truncated", "it ends inside the DICOM header", id="cut-in-header"),
    pytest.param(corpus.truncated_in_pixel_data, "truncated", "it ends inside the image data", id="cut-in-pixels"),
    pytest.param(lambda: corpus.truncated_in_pixel_data("j2k"), "truncated", "ends inside the image data",
                 id="cut-in-j2k"),
    pytest.param(lambda: corpus.truncated_in_pixel_data("rle"), "truncated", "ends inside the image data",
                 id="cut-in-rle"),
    pytest.param(lambda: corpus.truncated_in_pixel_data("jpeg_lossless"), "truncated", "ends inside the image data",
                 id="cut-in-jpeg-lossless"),
    pytest.param(corpus.fragment_cut_short, "undecodable", "could not be decoded as JPEG 2000",
                 id="j2k-codestream-cut"),
    pytest.param(lambda: corpus.fragment_cut_short("rle"), "undecodable", "could not be decoded as RLE",
                 id="rle-codestream-cut"),
    pytest.param(lambda: corpus.fragment_cut_short("jpeg_lossless"), "undecodable",
                 "could not be decoded as JPEG Lossless", id="jpeg-lossless-codestream-cut"),
    pytest.param(corpus.no_pixel_data, "no_pixel_data", "Pixel Data is missing", id="no-pixels"),
    pytest.param(corpus.ct_modality, "wrong_modality",
                 "Modality is CT; only chest radiographs (CR or DX) are accepted.", id="ct"),
    pytest.param(corpus.not_chest, "not_chest", "Body Part Examined is KNEE; only chest radiographs are accepted.",
                 id="knee"),
    pytest.param(corpus.multi_frame, "multi_frame", "The file holds 3 frames", id="three-frames"),
    pytest.param(corpus.undeclared_second_frame, "multi_frame", "more frames than the header declares",
                 id="undeclared-frame"),
    pytest.param(corpus.undecodable_syntax, "undecodable", "JPEG XL Lossless (1.2.840.10008.1.2.4.110)", id="jpeg-xl"),
    pytest.param(lambda: corpus.undecodable_syntax("1.2.840.10008.1.2.4.100"), "undecodable", "MPEG2", id="mpeg2"),
    pytest.param(corpus.burned_in_annotation, "burned_in_annotation", "burned-in annotation", id="burned-in"),
    pytest.param(corpus.missing_attribute, "missing_attribute", "Bits Stored (0028,0101) is missing",
                 id="no-bits-stored"),
    pytest.param(lambda: corpus.missing_attribute("SOPInstanceUID"), "missing_attribute",
                 "SOP Instance UID (0008,0018) is missing", id="no-sop-uid"),
    pytest.param(corpus.with_unreadable_value, "invalid_attribute", "Rescale Slope (0028,1053) cannot be read",
                 id="bad-rescale"),
    pytest.param(corpus.rgb_image, "unsupported_photometric", "Photometric Interpretation is RGB", id="rgb"),
    pytest.param(corpus.bits_allocated_32, "unsupported_pixel_format", "Bits Allocated is 32", id="32-bit"),
    pytest.param(corpus.oversized_pixel_data, "not_image_size", "the header does not describe these pixels",
                 id="too-many-bytes"),
    # Safe in this process: the pixel data are 8 × 8, so not even today's code could allocate much.
    # The real bombs are decoded only in a child process under a memory limit (further down).
    pytest.param(corpus.native_bomb, "too_many_pixels", "The image is declared 60,000 × 60,000 pixels",
                 id="declared-60000-square"),
    pytest.param(corpus.jpeg2000_mismatch, "not_image_size",
                 "codestream declares an image of 601 × 520 pixels, but the DICOM header declares 600 × 520",
                 id="j2k-siz-disagrees-with-header"),
    pytest.param(corpus.rle_lying_header, "undecodable", "a segment of 72 bytes cannot hold the 312,000 pixels",
                 id="rle-segment-too-short-for-header"),
]


@pytest.mark.parametrize(("build", "code", "phrase"), REFUSALS)
def test_refusal_gives_its_code_and_a_specific_reason(build, code, phrase):
    with pytest.raises(DicomRejection) as refused:
        read_radiograph(build())
    assert refused.value.code == code
    assert phrase in refused.value.reason
    assert str(refused.value) == refused.value.reason


def test_every_rejection_code_is_covered_by_a_refusal_test():
    tested = {param.values[1] for param in REFUSALS} | {"too_large"}
    assert tested == set(REJECTION_CODES)


def test_unreadable_attribute_of_no_consequence_is_dropped_not_refused():
    ds = read_radiograph(corpus.with_unreadable_value("KVP", "1.23", "1x23"))
    assert "KVP" not in ds


def test_unreadable_window_falls_back_to_the_auto_window():
    ds = read_radiograph(corpus.with_unreadable_value("WindowCenter", "2047.5", "20x7.5"))
    assert render_display(ds).source == "auto percentile"


def test_file_over_the_size_limit_is_refused(synthetic):
    with pytest.raises(DicomRejection) as refused:
        read_radiograph(synthetic, max_bytes=100_000)
    assert refused.value.code == "too_large"
    assert refused.value.reason == f"The file is {len(synthetic) / 1e6:.1f} MB; the largest file accepted is 0.1 MB."


def test_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.dcm"
    path.write_bytes(b"\x00" * 2_000_000)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("the file was opened"))
    with pytest.raises(DicomRejection) as refused:
        read_radiograph(path, max_bytes=1_000_000)
    assert refused.value.code == "too_large"


# ------------------------------------------------------------------------- decompression bombs
#
# Each bomb is handed to a child process that imports trial.dicom, then caps its own address space
# at what it uses plus _HEADROOM, and only then reads (or renders) the file: a decoder that starts
# allocating for the declared image dies there, not in the test runner.

_HEADROOM = 256 * 1024 * 1024
_CHILD = r"""
import io, json, resource, sys
import pydicom
from trial.dicom import DicomRejection, read_radiograph, render_display, render_values

data = sys.stdin.buffer.read()
status = open("/proc/self/status").read()
in_use = int(status.split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (in_use + int(sys.argv[2]), in_use + int(sys.argv[2])))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if sys.argv[1] == "read":
        read_radiograph(data)
    else:  # what the worker does with a stored file: render it (pydicom reads it lazily)
        render = {"values": render_values, "display": render_display,
                  "values_unbounded": lambda ds: render_values(ds, max_pixels=10**12)}[sys.argv[1]]
        render(pydicom.dcmread(io.BytesIO(data)))
    outcome = {"code": "accepted"}
except DicomRejection as exc:
    outcome = {"code": exc.code, "reason": exc.reason}
except MemoryError:
    outcome = {"code": "MemoryError"}
outcome["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(outcome))
"""


def _in_memory_limited_child(data: bytes, action: str = "read") -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", _CHILD, action, str(_HEADROOM)], input=data, capture_output=True,
        cwd=Path(__file__).resolve().parents[2], timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:  # e.g. a codec that aborts when an allocation fails
        return {"code": "died", "exit": done.returncode, "stderr": done.stderr.decode()[-2000:]}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


BOMBS = [
    pytest.param(corpus.jpeg2000_bomb, "too_many_pixels", "46,340 × 46,340 pixels", id="j2k-1kb-46340-square"),
    pytest.param(corpus.rle_bomb, "too_many_pixels", "20,000 × 20,000 pixels", id="rle-6mb-20000-square"),
    pytest.param(corpus.jpeg2000_lying_header, "not_image_size",
                 "codestream declares an image of 46,340 × 46,340 pixels, but the DICOM header declares 512 × 512",
                 id="j2k-header-says-512"),
    pytest.param(corpus.jpeg2000_tile_bomb, "undecodable", "cut into 62,500 tiles", id="j2k-62500-tiles"),
    pytest.param(corpus.deflate_bomb, "too_large", "inflates to more than", id="deflate-1mb-to-1gb"),
]


@pytest.mark.parametrize(("build", "code", "phrase"), BOMBS)
def test_decompression_bomb_is_refused_before_it_is_decoded(build, code, phrase):
    outcome = _in_memory_limited_child(build())
    assert (outcome["code"], phrase in outcome.get("reason", "")) == (code, True), outcome
    assert outcome["grew_mb"] < 64  # the refusal itself allocates next to nothing


@pytest.mark.parametrize("action", ["values", "display"])
@pytest.mark.parametrize("build", [corpus.rle_bomb, corpus.jpeg2000_bomb], ids=["rle", "j2k"])
def test_worker_rendering_refuses_a_bomb_it_is_handed_directly(build, action):
    outcome = _in_memory_limited_child(build(), action)
    assert outcome["code"] == "too_many_pixels", outcome
    assert outcome["grew_mb"] < 64


def test_the_memory_limited_child_does_catch_a_real_allocation():
    # The check of the checks: the same child, asked to decode the 20,000² RLE bomb with the limit
    # lifted out of the way of read_radiograph, runs out of memory (so the tests above mean something).
    outcome = _in_memory_limited_child(corpus.rle_bomb(), "values_unbounded")
    assert outcome["code"] in {"MemoryError", "died"}, outcome


def test_pixel_limit_can_be_lowered(synthetic):
    with pytest.raises(DicomRejection) as refused:
        read_radiograph(synthetic, max_pixels=100_000)
    assert refused.value.code == "too_many_pixels"
    assert refused.value.reason.startswith("The image is declared 600 × 520 pixels (0.3 megapixels); the largest "
                                           "image accepted is 0.1 megapixels (about 316 × 316).")


@pytest.mark.parametrize("render", [render_display, dicom.render_values], ids=["display", "values"])
def test_rendering_refuses_an_image_over_its_pixel_limit_before_decoding(render, synthetic, monkeypatch):
    ds = pydicom.dcmread(io.BytesIO(synthetic))  # lazily: nothing decoded yet
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(DicomRejection) as refused:
        render(ds, max_pixels=100_000)
    assert refused.value.code == "too_many_pixels"


def test_default_pixel_limit_fits_the_largest_chest_detectors():
    assert 4300 * 4300 < 4320 * 4320 < dicom.MAX_PIXELS <= 25_000_000  # 43 × 43 cm at 100 µm, and some room


def test_jpeg2000_in_a_jp2_wrapper_is_accepted():
    ds = read_radiograph(corpus.jp2_wrapped())
    assert np.array_equal(ds.pixel_array, read_radiograph(corpus.radiograph_bytes()).pixel_array)


def test_a_deflated_data_set_of_a_real_size_is_accepted():
    ds = read_radiograph(corpus.deflated_bytes())
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    assert np.array_equal(ds.pixel_array, read_radiograph(corpus.radiograph_bytes()).pixel_array)


@pytest.mark.parametrize("syntax", ["JPEGLSLossless", "JPEGBaselineProcess1", "JPEGExtendedProcess2_4"])
def test_other_jpeg_codestreams_have_their_frame_header_read_and_are_accepted(syntax):
    ds = read_radiograph(corpus.gdcm_transcoded(corpus.radiograph_bytes(bits_stored=8), syntax))
    assert ds.pixel_array.shape == (600, 520)


@pytest.mark.filterwarnings("ignore")  # pydicom warns about the damage, as it should
def test_damaged_files_are_refused_or_accepted_never_crash():
    # Deterministic mutations of small files: cuts anywhere, bytes changed in the header.  Every
    # outcome must be an accepted, renderable, de-identifiable file or a DicomRejection.
    import random

    rng = random.Random(20260517)
    originals = [corpus.radiograph_bytes(rows=120, columns=100), corpus.bare_dataset_bytes(rows=120, columns=100),
                 corpus.compressed_bytes("rle", rows=120, columns=100),
                 corpus.compressed_bytes("jpeg_lossless", rows=120, columns=100)]
    outcomes = set()
    for _ in range(200):
        data = bytearray(rng.choice(originals))
        if rng.random() < 0.4:
            data = data[: rng.randrange(len(data))]
        else:
            header_end = bytes(data).rindex(b"\xe0\x7f\x10\x00")
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(header_end)] = rng.randrange(256)
        try:
            ds = read_radiograph(bytes(data))
            render_display(ds)
            dicom_bytes(deidentify(ds, case_code="F", uid_secret=SECRET)[0])
            outcomes.add("accepted")
        except DicomRejection as refused:
            outcomes.add(refused.code)
    assert {"accepted", "truncated"} <= outcomes


def test_unknown_rejection_code_is_a_programming_error():
    with pytest.raises(ValueError):
        DicomRejection("nope", "whatever")


# ------------------------------------------------------------------------- de-identification


def test_no_identifying_value_is_left_anywhere_in_the_file(deidentified, synthetic):
    *_, written = deidentified
    for name, value in corpus.PHI.items():
        assert value.encode() in synthetic, f"{name} was not planted"
        assert value.encode() not in written, f"{name} ({value}) leaked"


def test_no_identifying_value_is_left_in_a_compressed_file():
    data = corpus.compressed_bytes("jpeg_lossless")
    clean, _ = deidentify(read_radiograph(data), case_code="CXR-0002", uid_secret=SECRET)
    written = dicom_bytes(clean)
    leaked = [name for name, value in corpus.PHI.items() if value.encode() in written]
    assert leaked == []


def test_real_film_identifiers_are_removed(real_film):
    clean, _ = deidentify(real_film, case_code="CXR-0003", uid_secret=SECRET)
    written = dicom_bytes(clean)
    for value in ("CompressedSamples^RG1", "9RG1", "19400305", "Philips Medical Systems Hamburg",
                  "THORAVISION", "92.00.003", "exam Number", "Our Department", "CLUNIE1",
                  str(real_film.StudyInstanceUID), str(real_film.SOPInstanceUID)):
        assert value.encode() not in written, value


def test_original_uids_are_nowhere_in_the_file(deidentified):
    ds, _, record, written = deidentified
    for uid in (record.sop_instance_uid, record.study_instance_uid, str(ds.SeriesInstanceUID),
                "1.2.826.0.1.3680043.10.543.99.1"):
        assert uid.encode() not in written


def test_private_tags_are_gone_at_every_depth(deidentified):
    *_, written = deidentified
    reread = pydicom.dcmread(io.BytesIO(written))
    private = []
    reread.walk(lambda ds, elem: private.append(elem.tag) if elem.tag.is_private else None)
    assert private == []


def test_nested_person_name_is_removed_and_the_code_kept(deidentified):
    # (the remove-list replaced it by a dummy; the allow-list keeps only the code in a view modifier item)
    _, clean, *_ = deidentified
    modifier = clean.ViewCodeSequence[0].ViewModifierCodeSequence[0]
    assert "PersonName" not in modifier and "ContentDate" not in modifier
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("R-102CD", "erect")  # what is not identifying stays


def test_sequences_the_profile_removes_are_gone(deidentified):
    _, clean, *_ = deidentified
    assert "RequestAttributesSequence" not in clean
    assert "ReferencedStudySequence" not in clean


def test_patient_is_named_by_the_case_code(deidentified):
    _, clean, *_ = deidentified
    assert clean.PatientName == "CXR-0001"
    assert clean.PatientID == "CXR-0001"


def test_identity_removed_and_method_are_declared(deidentified):
    _, clean, *_ = deidentified
    assert clean.PatientIdentityRemoved == "YES"
    assert "Basic Application Level Confidentiality Profile" in clean.DeidentificationMethod
    codes = [(item.CodeValue, item.CodingSchemeDesignator) for item in clean.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM")]
    assert clean.LongitudinalTemporalInformationModified == "REMOVED"


def test_basic_profile_empties_sex_and_removes_age(deidentified):
    _, clean, *_ = deidentified
    assert clean.PatientSex == ""
    assert "PatientAge" not in clean


def test_retaining_patient_characteristics_keeps_sex_and_age_and_says_so(synthetic):
    clean, _ = deidentify(read_radiograph(synthetic), case_code="CXR-0004", uid_secret=SECRET,
                          retain_patient_characteristics=True)
    assert (clean.PatientSex, clean.PatientAge) == ("F", "071Y")
    assert [item.CodeValue for item in clean.DeidentificationMethodCodeSequence] == ["113100", "113108"]


def test_dates_are_removed_or_emptied(deidentified):
    _, clean, *_ = deidentified
    assert clean.StudyDate == ""
    assert clean.PatientBirthDate == ""
    assert clean.ContentDate == "19000101"  # Type 1 in DX: a dummy, not the real date
    assert "AcquisitionDateTime" not in clean
    assert "SeriesDate" not in clean


def test_what_the_reader_needs_is_kept(deidentified):
    ds, clean, *_ = deidentified
    for keyword in ("Modality", "PhotometricInterpretation", "WindowCenter", "WindowWidth",
                    "ViewPosition", "BodyPartExamined", "Rows", "Columns", "BitsStored", "SOPClassUID"):
        assert clean[keyword].value == ds[keyword].value, keyword


def test_pixel_data_is_unchanged_bit_for_bit(deidentified):
    ds, clean, _, written = deidentified
    assert clean.PixelData == ds.PixelData
    assert pydicom.dcmread(io.BytesIO(written)).PixelData == ds.PixelData


def test_implicit_vr_file_is_written_back_readable():
    ds = read_radiograph(corpus.bare_dataset_bytes(voi_lut=True))
    clean, _ = deidentify(ds, case_code="CXR-0006", uid_secret=SECRET)
    again = read_radiograph(dicom_bytes(clean))
    assert np.array_equal(again.pixel_array, ds.pixel_array)
    assert render_display(again).png == render_display(ds).png


def test_compressed_pixel_data_is_unchanged_bit_for_bit():
    ds = read_radiograph(corpus.compressed_bytes("j2k"))
    clean, _ = deidentify(ds, case_code="CXR-0005", uid_secret=SECRET)
    reread = pydicom.dcmread(io.BytesIO(dicom_bytes(clean)))
    assert reread.PixelData == ds.PixelData
    assert reread.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_written_file_is_read_back_by_pydicom_and_accepted_again(deidentified):
    *_, written = deidentified
    again = read_radiograph(written)
    assert again.PatientIdentityRemoved == "YES"


def test_media_storage_uid_matches_the_new_sop_instance_uid(deidentified):
    _, clean, record, written = deidentified
    reread = pydicom.dcmread(io.BytesIO(written))
    assert reread.file_meta.MediaStorageSOPInstanceUID == reread.SOPInstanceUID == clean.SOPInstanceUID
    assert reread.SOPInstanceUID != record.sop_instance_uid


def test_same_file_and_secret_give_the_same_uids(synthetic):
    first, _ = deidentify(read_radiograph(synthetic), case_code="A", uid_secret=SECRET)
    second, _ = deidentify(read_radiograph(synthetic), case_code="B", uid_secret=SECRET)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert first[keyword].value == second[keyword].value


def test_another_secret_gives_other_uids(synthetic):
    first, _ = deidentify(read_radiograph(synthetic), case_code="A", uid_secret=SECRET)
    other, _ = deidentify(read_radiograph(synthetic), case_code="A", uid_secret=b"another trial's secret")
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert first[keyword].value != other[keyword].value


def test_one_original_uid_maps_to_one_new_uid_across_the_files_of_a_study():
    # two views of one study: other SOP Instance UIDs, the same study and series
    pa = read_radiograph(corpus.radiograph_bytes(seed=1))
    lateral = read_radiograph(corpus.radiograph_bytes(seed=2))
    lateral.StudyInstanceUID, lateral.SeriesInstanceUID = pa.StudyInstanceUID, pa.SeriesInstanceUID
    lateral.ReferencedImageSequence = pydicom.Sequence([pydicom.Dataset()])
    lateral.ReferencedImageSequence[0].ReferencedSOPInstanceUID = pa.SOPInstanceUID
    lateral.FrameOfReferenceUID = pa.StudyInstanceUID
    first, _ = deidentify(pa, case_code="A", uid_secret=SECRET)
    second, _ = deidentify(lateral, case_code="B", uid_secret=SECRET)
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert (first.StudyInstanceUID, first.SeriesInstanceUID) == (second.StudyInstanceUID, second.SeriesInstanceUID)
    # references a chest film does not need are not carried at all (the remove-list mapped them)
    assert "ReferencedImageSequence" not in second and "FrameOfReferenceUID" not in second


def test_new_uids_are_valid_2_25_uids(deidentified):
    _, clean, *_ = deidentified
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        uid = clean[keyword].value
        assert uid.startswith("2.25.") and len(uid) <= 64 and uid.is_valid


def test_uid_root_can_be_the_trials_own(synthetic):
    clean, _ = deidentify(read_radiograph(synthetic), case_code="A", uid_secret=SECRET,
                          uid_root="1.2.826.0.1.3680043.10.543.")
    assert clean.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.543.")
    assert len(clean.SOPInstanceUID) <= 64 and clean.SOPInstanceUID.is_valid


def test_record_keeps_the_original_identifiers(deidentified):
    ds, _, record, _ = deidentified
    assert record == DeidRecord(
        accession_number=corpus.PHI["accession"],
        sop_instance_uid=str(ds.SOPInstanceUID),
        study_instance_uid=str(corpus.STUDY_UID),
        patient_id=corpus.PHI["patient_id"],
    )


def test_input_dataset_is_left_as_it_was(synthetic):
    ds = read_radiograph(synthetic)
    deidentify(ds, case_code="A", uid_secret=SECRET)
    assert ds.PatientName == corpus.PHI["patient_name"]
    assert ds.AccessionNumber == corpus.PHI["accession"]


@pytest.mark.parametrize("case_code", ["", "A\\B", "x" * 65])
def test_unusable_case_code_is_refused(synthetic, case_code):
    with pytest.raises(ValueError):
        deidentify(read_radiograph(synthetic), case_code=case_code, uid_secret=SECRET)


def test_public_attribute_unknown_to_the_dictionary_is_removed(synthetic):
    ds = read_radiograph(synthetic)
    ds.add_new(0x00089999, "LO", "Doe^Jane in an unknown attribute")
    clean, _ = deidentify(ds, case_code="A", uid_secret=SECRET)
    assert 0x00089999 not in clean


def test_a_sequence_stored_as_bytes_is_removed(synthetic):
    ds = read_radiograph(synthetic)
    del ds.ViewCodeSequence
    ds.add_new(0x00540220, "OB", b"\x40\x00\x23\xa1PN\x0c\x00Nested^Nancy")  # View Code Sequence as OB
    clean, _ = deidentify(ds, case_code="A", uid_secret=SECRET)
    assert 0x00540220 not in clean


def test_a_text_value_that_swallowed_its_neighbours_is_removed(synthetic):
    # a damaged length field: the value runs on past its VR's maximum, over the next elements
    ds = read_radiograph(synthetic)
    view = ds.ViewCodeSequence[0]
    with pytest.warns(UserWarning, match="exceeds the maximum length"):
        view["CodeMeaning"].value = "postero-anterior" + "\x00" * 3 + "PN\x0c\x00Nested^Nancy" * 3
    clean, _ = deidentify(ds, case_code="A", uid_secret=SECRET)
    assert "CodeMeaning" not in clean.ViewCodeSequence[0]  # a kept attribute, dropped for its damage
    assert clean.ViewCodeSequence[0].CodeValue == "R-10214"


def test_person_names_go_whatever_the_table_says_of_them(synthetic):
    ds = read_radiograph(synthetic)
    ds.RequestingPhysician = "Requester^Rita"  # X in the table
    ds.VerifyingObserverName = "Verifier^Vera"  # D
    ds.ContentCreatorName = "Creator^Carl"  # Z
    ds.ReviewerName = "Reviewer^Rex"  # RT only, left out of our table: caught by the PN rule
    clean, _ = deidentify(ds, case_code="A", uid_secret=SECRET)
    written = dicom_bytes(clean)
    for name in (b"Requester^Rita", b"Verifier^Vera", b"Creator^Carl", b"Reviewer^Rex"):
        assert name not in written
    assert "ReviewerName" not in clean  # not on the allow-list: removed, not merely emptied


def test_profile_table_lists_the_core_identifiers_with_their_actions():
    # the standard's own letters, choices included (the table is generated from its data)
    assert BASIC_PROFILE["PatientBirthDate"] == "Z"
    assert BASIC_PROFILE["AccessionNumber"] == "Z"
    assert BASIC_PROFILE["InstitutionName"] == "X/Z/D"
    assert BASIC_PROFILE["StudyInstanceUID"] == "U"
    assert BASIC_PROFILE["PersonName"] == "D"
    assert set(BASIC_PROFILE.values()) <= {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


# ------------------------------------------------------------------------------------ viewer values


def _unpack(values_png: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(values_png)).convert("RGB")).astype(np.uint16)
    return (rgb[..., 0] << 8) | rgb[..., 1]


def test_viewer_values_match_the_display_image_size_and_brightness():
    ds = read_radiograph(corpus.real_cr_film("RG1_UNCR.dcm"))
    display = render_display(ds)
    values = dicom.render_values(ds)
    assert (values.width, values.height) == (display.width, display.height)
    v = _unpack(values.png).astype(np.float64)
    shown = np.asarray(Image.open(io.BytesIO(display.png))).astype(np.float64)
    # MONOCHROME1 film: values are already inverted, so they rise and fall with the display image
    assert np.corrcoef(v.ravel(), shown.ravel())[0, 1] > 0.95


def test_viewer_auto_window_reproduces_the_auto_display():
    ds = read_radiograph(corpus.radiograph_bytes(photometric="MONOCHROME1", bits_stored=12, window=False))
    values = dicom.render_values(ds)
    c, w = values.windows["auto"]
    v = _unpack(values.png).astype(np.float64)
    windowed = np.clip((v - (c - w / 2)) / w, 0, 1) * 255
    shown = np.asarray(Image.open(io.BytesIO(render_display(ds, window="auto").png))).astype(np.float64)
    assert np.abs(windowed - shown).mean() < 2.0


def test_viewer_presets_are_ordered_dark_to_bright():
    values = dicom.render_values(read_radiograph(corpus.radiograph_bytes()))
    w = values.windows
    assert w["file"] is not None and set(w) == {"auto", "file", "lung", "mediastinum", "bone"}
    assert w["lung"][0] < w["mediastinum"][0] < w["bone"][0]


def test_a_warning_from_another_thread_is_not_taken_for_damage(monkeypatch):
    """catch_warnings is process-wide: a database connection the garbage collector closes in another thread of the
    DICOM listener warns (ResourceWarning) while this thread decodes an image; the image is not damaged."""
    import warnings

    data = corpus.radiograph_bytes(seed=3)
    real = pydicom.dataset.Dataset.pixel_array

    def decode_while_another_thread_warns(self):
        warnings.warn("unclosed connection <psycopg.Connection>", ResourceWarning, stacklevel=1)
        return real.fget(self)

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(decode_while_another_thread_warns))
    assert read_radiograph(data).Rows == 600
