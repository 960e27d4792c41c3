"""Synthetic chest radiographs: deterministic, accepted by the ingest, drawn where the report says."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ai.labeler import label_report
from demo.phantoms import FINDINGS, make_dataset, make_phantom, random_findings
from trial.dicom import deidentify, dicom_bytes, read_radiograph, render_display

LATERAL = ("pleural effusion", "pneumothorax", "consolidation", "atelectasis", "lung opacity")
DENSER = ("pleural effusion", "consolidation", "atelectasis", "cardiomegaly", "lung opacity")


def test_the_same_seed_gives_the_same_phantom():
    a = make_phantom(findings=["pneumothorax", "cardiomegaly"], seed=11, size=128)
    b = make_phantom(findings=("cardiomegaly", "pneumothorax"), seed=11, size=128)
    assert np.array_equal(a.pixels, b.pixels)
    assert a.png == b.png and a.dicom == b.dicom
    assert a.report == b.report and a.clinical_history == b.clinical_history
    assert dict(a.details) == dict(b.details)


def test_different_seeds_give_different_patients():
    a, b = make_phantom(seed=1, size=128), make_phantom(seed=2, size=128)
    assert not np.array_equal(a.pixels, b.pixels)
    assert read_radiograph(a.dicom).SOPInstanceUID != read_radiograph(b.dicom).SOPInstanceUID


@pytest.mark.parametrize("modality", ["CR", "DX"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits_stored", [8, 12, 16])
def test_the_dicom_file_is_accepted_by_the_ingest(modality, photometric, bits_stored):
    phantom = make_phantom(findings=["pleural effusion"], seed=5, size=256, bits_stored=bits_stored,
                           photometric=photometric, modality=modality)
    ds = read_radiograph(phantom.dicom)
    assert (ds.Modality, ds.PhotometricInterpretation, int(ds.BitsStored)) == (modality, photometric, bits_stored)
    assert (int(ds.Rows), int(ds.Columns)) == (256, 256)
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == "PA"
    assert np.array_equal(ds.pixel_array, phantom.pixels)
    assert phantom.pixels.dtype == np.uint16 and int(phantom.pixels.max()) < 2**bits_stored
    assert "not a patient image" in ds.ImageComments


def test_the_png_is_the_products_display_rendering_of_the_dicom():
    phantom = make_phantom(findings=["consolidation"], seed=8, size=256)
    assert phantom.png == render_display(read_radiograph(phantom.dicom)).png
    image = Image.open(io.BytesIO(phantom.png))
    assert (image.mode, image.size) == ("L", (256, 256))


def test_monochrome1_displays_like_monochrome2():
    # The same patient stored with the opposite polarity looks the same once rendered.
    m1 = make_phantom(seed=4, size=128, photometric="MONOCHROME1")
    m2 = make_phantom(seed=4, size=128, photometric="MONOCHROME2")
    a = np.asarray(Image.open(io.BytesIO(m1.png)), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(m2.png)), dtype=float)
    assert np.abs(a - b).mean() < 1.0
    assert m1.pixels.mean() > m2.pixels.mean()  # stored inverted


def test_the_display_shows_dark_lungs_and_a_bright_mediastinum():
    image = np.asarray(Image.open(io.BytesIO(make_phantom(seed=3, size=256).png)), dtype=float)
    right_lung = image[90:150, 50:90].mean()  # the image's left: the patient's right lung
    mediastinum = image[40:100, 122:134].mean()
    outside = image[:20, :20].mean()
    assert outside < right_lung < mediastinum


def test_the_dicom_carries_fake_identity_that_deidentification_removes():
    phantom = make_phantom(seed=21, size=128)
    ds = read_radiograph(phantom.dicom)
    name, patient_id = str(ds.PatientName), str(ds.PatientID)
    assert "^" in name and patient_id and ds.AccessionNumber and ds.PatientBirthDate and ds.InstitutionName
    clean, record = deidentify(ds, case_code="CASE-0001", uid_secret=b"test secret")
    data = dicom_bytes(clean)
    assert record.patient_id == patient_id
    for value in (name.split("^")[0], patient_id, str(ds.AccessionNumber), str(ds.InstitutionName)):
        assert value.encode() not in data
    assert read_radiograph(data).PatientName == "CASE-0001"


def test_labels_name_every_finding_and_only_the_requested_ones_are_true():
    phantom = make_phantom(findings=["atelectasis", "lung opacity"], seed=3, size=64)
    assert tuple(phantom.labels) == FINDINGS
    assert {k for k, v in phantom.labels.items() if v} == {"atelectasis", "lung opacity"}
    assert set(phantom.details) == {"atelectasis", "lung opacity"}


def test_the_labeler_reads_the_phantom_labels_back_from_200_reports():
    rng = np.random.default_rng(2026)
    for i in range(200):
        phantom = make_phantom(findings=random_findings(rng), seed=i, size=64)
        labels = label_report(phantom.report.text, FINDINGS)
        assert labels == {name: "present" if v else "absent" for name, v in phantom.labels.items()}, phantom.report.text


def test_a_normal_phantom_has_a_normal_report():
    phantom = make_phantom(seed=9, size=64)
    assert not any(phantom.labels.values()) and not phantom.details
    assert phantom.report.impression in ("No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.",
                                         "Normal chest radiograph.", "No active disease.")
    assert set(label_report(phantom.report.text, FINDINGS).values()) == {"absent"}


def test_reports_vary_between_seeds():
    texts = {make_phantom(findings=["pleural effusion"], seed=s, size=64).report.findings for s in range(30)}
    assert len(texts) >= 10


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_changes_the_image_only_in_its_box(finding):
    # The same seed draws the same patient: the difference is the finding, and it lies in its box.
    for seed in range(6):
        without = make_phantom(seed=seed, size=256).pixels.astype(np.int64)
        phantom = make_phantom(findings=[finding], seed=seed, size=256)
        diff = phantom.pixels.astype(np.int64) - without
        r0, c0, r1, c1 = phantom.details[finding].box
        outside = diff.copy()
        outside[r0:r1, c0:c1] = 0
        assert not outside.any(), f"{finding} changed pixels outside its box (seed {seed})"
        inside = diff[r0:r1, c0:c1]
        top = 2**12 - 1
        assert np.abs(inside).mean() > 0.001 * top
        assert (np.abs(inside) > 0.05 * top).sum() >= 20  # a visible patch, not noise
        if finding in DENSER:
            assert inside.mean() > 0, f"{finding} should add density (seed {seed})"
        else:
            assert inside.mean() < 0, "a pneumothorax is a lucency"


@pytest.mark.parametrize("finding", LATERAL)
def test_a_finding_is_drawn_on_the_side_its_report_names(finding):
    # A PA film shows the patient's right on the image's left.
    for seed in range(12):
        phantom = make_phantom(findings=[finding], seed=seed, size=128)
        detail = phantom.details[finding]
        _, c0, _, c1 = detail.box
        if detail.side == "right":
            assert c1 <= 64 + 2
        elif detail.side == "left":
            assert c0 >= 64 - 2
        else:
            assert c0 < 64 < c1
        said = phantom.report.findings.lower()  # the lingula is in the left lung
        words = {"right": ("right",), "left": ("left", "lingula"),
                 "bilateral": ("bilateral", "both", "bibasilar")}[detail.side]
        assert any(w in said for w in words), said


def test_cardiomegaly_makes_the_heart_wider_than_half_the_chest():
    for seed in range(10):
        normal = make_phantom(seed=seed, size=64)
        enlarged = make_phantom(findings=["cardiomegaly"], seed=seed, size=64)
        assert normal.cardiothoracic_ratio < 0.5 < enlarged.cardiothoracic_ratio


def test_a_small_effusion_is_smaller_than_a_large_one():
    areas: dict[str, list[int]] = {"small": [], "large": []}
    for seed in range(60):
        phantom = make_phantom(findings=["pleural effusion"], seed=seed, size=128)
        size = phantom.details["pleural effusion"].size
        if size in areas and phantom.details["pleural effusion"].side != "bilateral":
            diff = phantom.pixels.astype(int) - make_phantom(seed=seed, size=128).pixels.astype(int)
            areas[size].append(int((diff > 200).sum()))
    assert areas["small"] and areas["large"]
    assert np.mean(areas["small"]) * 2 < np.mean(areas["large"])


def test_random_findings_gives_a_realistic_mix():
    rng = np.random.default_rng(0)
    draws = [random_findings(rng) for _ in range(3000)]
    normal = sum(not d for d in draws) / len(draws)
    assert 0.30 <= normal <= 0.40
    assert sum(len(d) >= 2 for d in draws) > 300
    for name in FINDINGS:
        assert sum(name in d for d in draws) > 150
    assert all(d <= set(FINDINGS) for d in draws)


def test_make_dataset_is_deterministic_and_a_longer_list_starts_with_the_shorter():
    short = make_dataset(3, seed=7, size=64)
    long = make_dataset(5, seed=7, size=64)
    assert [p.dicom for p in short] == [p.dicom for p in long[:3]]
    assert len({p.seed for p in long}) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"findings": ["pneumonia"]}, "unknown finding"),
        ({"findings": "pneumothorax"}, "not one string"),
        ({"size": 32}, "size must be"),
        ({"bits_stored": 20}, "bits_stored"),
        ({"photometric": "RGB"}, "photometric"),
        ({"modality": "CT"}, "modality"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    kwargs = {"seed": 1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        make_phantom(**kwargs)
