"""The phantom as stored pixel values and a DICOM file, with invented patient details to de-identify."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from .anatomy import _Anatomy


def _to_stored(
    img: np.ndarray, a: _Anatomy, bits_stored: int, photometric: str
) -> tuple[np.ndarray, tuple[float, float]]:
    top = 2**bits_stored - 1
    lo, hi = a.lo * top, a.hi * top
    values = np.rint(img * np.float32(hi - lo) + np.float32(lo))
    center = lo + a.window_center * (hi - lo)
    width = max(a.window_width * (hi - lo), 2.0)
    if photometric == "MONOCHROME1":
        values = np.float32(top) - values
        center = top - center
    pixels = values.astype(np.uint16)
    pixels.setflags(write=False)
    return pixels, (float(center), float(width))


@dataclass(frozen=True)
class _Person:
    name: str
    patient_id: str
    sex: str
    age: int
    birth_date: str
    study_date: str
    study_time: str
    accession: str
    institution: str
    referring: str


# Invented names, put together at random: they name nobody, but they look like a hospital's data,
# so de-identification has something real-looking to remove.
_FAMILY = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Castillo", "Brennan", "Haddad", "Kowalczyk",
           "Ferreira", "Abernathy", "Nakamura", "Oyelaran", "Petrov", "Van der Berg", "Quispe", "Mbeki", "Sørensen")
_GIVEN_F = ("Maria", "Ingrid", "Aiko", "Fatima", "Claire", "Joanna", "Lucia", "Amara", "Elena", "Nadia")
_GIVEN_M = ("Tomas", "Kenji", "Samuel", "Omar", "Pierre", "Marek", "Diego", "Chidi", "Lars", "Ivan")
_INSTITUTIONS = ("Riverside General Hospital", "St Brendan's Infirmary", "Northgate Community Hospital",
                 "Lakeshore University Medical Centre", "Harbourview District Hospital")
_REFERRING = ("Whitfield^Anna", "Osei^Kwame", "Marchetti^Paolo", "Yilmaz^Deniz", "Gallagher^Ruth")


def _person(rng: np.random.Generator) -> _Person:
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    family = rng.choice(_FAMILY)
    age = int(rng.integers(18, 92))
    study = _dt.date(2023, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    birth = study - _dt.timedelta(days=age * 365 + int(rng.integers(0, 365)))
    seconds = int(rng.integers(7 * 3600, 22 * 3600))
    return _Person(
        name=f"{family}^{given}",
        patient_id=f"MRN{int(rng.integers(10**7, 10**8))}",
        sex=sex,
        age=age,
        birth_date=birth.strftime("%Y%m%d"),
        study_date=study.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        accession=f"ACC{int(rng.integers(10**8, 10**9))}",
        institution=str(rng.choice(_INSTITUTIONS)),
        referring=str(rng.choice(_REFERRING)),
    )


def _dataset(
    pixels: np.ndarray,
    window: tuple[float, float],
    person: _Person,
    *,
    seed: int,
    present: frozenset[str],
    bits_stored: int,
    photometric: str,
    modality: str,
    size: int,
) -> FileDataset:
    dx = modality == "DX"
    key = ["cxr-trial phantom", str(seed), ",".join(sorted(present)), str(size), str(bits_stored), photometric,
           modality]
    study_uid = generate_uid(entropy_srcs=[*key[:2], "study"])
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the invented names are not all ASCII
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation if dx else ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*key, "instance"])
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = person.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = person.study_time
    ds.AccessionNumber = person.accession
    ds.Modality = modality
    ds.Manufacturer = "CXR-Trial"
    ds.InstitutionName = person.institution
    ds.ReferringPhysicianName = person.referring
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesDescription = "PA"
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.SoftwareVersions = "ai.phantoms 1"
    ds.PatientName = person.name
    ds.PatientID = person.patient_id
    ds.PatientBirthDate = person.birth_date
    ds.PatientSex = person.sex
    ds.PatientAge = f"{person.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.KVP = "120"
    ds.ImagerPixelSpacing = [f"{430.0 / size:.4f}"] * 2
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*key, "series"])
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = "Synthetic phantom generated by CXR-Trial: not a patient image, not for clinical use."
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=bits_stored,
                      generate_instance_uid=False)
    ds.WindowCenter = f"{window[0]:.1f}"
    ds.WindowWidth = f"{window[1]:.1f}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return FileDataset("", ds, file_meta=meta, preamble=b"\x00" * 128)
