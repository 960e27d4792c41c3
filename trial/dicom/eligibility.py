"""A trial's inclusion and exclusion rules, as data, checked on an arriving image's original header; no Django.

Eligibility is decided before de-identification, because the facts it needs (age, birth date, patient
identity) are what de-identification removes. What leaves this module holds no PHI: an `Arrival`
keeps the patient only as a keyed hash (HMAC-SHA256 with the trial's secret, so the same patient maps
to the same key within one trial and to unrelated keys across trials), the age in whole years, and the
study date; a `Decision` names the rule that decided and says why in words a screening log can show.

Rules are checked in a fixed order and the first that fails decides, so that each not-enrolled arrival
is counted under exactly one reason in the CONSORT flow:

    modality → body part → view position → age (missing, under, over) → repeat of the same patient

Ages: Patient's Age (0010,1010, "045Y", "006M", "010W", "003D") when present, otherwise Patient's Birth
Date against the Study Date (or the Series, Acquisition or Content Date). An image with neither is
"age unknown", which the rules either exclude (the default: an adults-only trial cannot assume) or
accept. "Repeat": the same patient already enrolled with a study date within the window before this
or after this one (a follow-up film of the same admission would otherwise weigh that patient twice).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Final

from pydicom.dataset import Dataset

from .attributes import _text

# Stable slugs: stored in the screening log and counted in the CONSORT flow; never renamed.
EXCLUSION_CODES: Final[Mapping[str, str]] = MappingProxyType({
    "modality": "Modality not accepted by the trial",
    "body_part": "Body part not accepted by the trial",
    "view_position": "View position not accepted by the trial",
    "age_unknown": "Age unknown (no Patient's Age, no birth date)",
    "under_age": "Younger than the trial's minimum age",
    "over_age": "Older than the trial's maximum age",
    "repeat": "Same patient enrolled within the repeat window",
})

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.2425 / 12, "Y": 365.2425}
_STUDY_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


def _upper_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({str(v).strip().upper() for v in values if str(v).strip()}))


@dataclass(frozen=True)
class EligibilityRules:
    """Stored with the trial as JSON (`to_dict` / `from_dict`). An empty tuple accepts any value."""

    modalities: tuple[str, ...] = ("CR", "DX")
    body_parts: tuple[str, ...] = ("CHEST",)
    view_positions: tuple[str, ...] = ("AP", "PA")
    min_age_years: int | None = 18
    max_age_years: int | None = None
    accept_unknown_age: bool = False
    repeat_window_days: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", _upper_tuple(self.modalities))
        object.__setattr__(self, "body_parts", _upper_tuple(self.body_parts))
        object.__setattr__(self, "view_positions", _upper_tuple(self.view_positions))
        for name in ("min_age_years", "max_age_years", "repeat_window_days"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number ≥ 0 or empty; got {value!r}.")
        low, high = self.min_age_years, self.max_age_years
        if low is not None and high is not None and low > high:
            raise ValueError(f"The minimum age ({self.min_age_years}) is above the maximum ({self.max_age_years}).")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EligibilityRules:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown eligibility rules: {', '.join(sorted(unknown))}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Arrival:
    """What the rules see of one arriving image: no PHI (the patient is a keyed hash)."""

    modality: str
    body_part: str
    view_position: str
    age_years: int | None
    study_date: date | None
    patient_key: str = field(repr=False)


@dataclass(frozen=True)
class Decision:
    eligible: bool
    code: str = ""        # one of EXCLUSION_CODES when not eligible
    reason: str = ""      # the sentence for the screening log (no PHI)

    def __bool__(self) -> bool:
        return self.eligible


def patient_key(ds: Dataset, *, secret: bytes) -> str:
    """HMAC-SHA256 of the patient's identity (Patient ID and its issuer, normalized), hex. Empty Patient ID: ""
    (such images cannot be matched, so the repeat rule never excludes them)."""
    if len(secret) < 16:
        raise ValueError("The patient key needs a secret of at least 16 bytes.")
    patient_id = unicodedata.normalize("NFKC", _text(ds, "PatientID")).strip().upper()
    if not patient_id:
        return ""
    issuer = unicodedata.normalize("NFKC", _text(ds, "IssuerOfPatientID")).strip().upper()
    return hmac.new(secret, f"{issuer}\x1f{patient_id}".encode(), hashlib.sha256).hexdigest()


def _dicom_date(text: str) -> date | None:
    text = text.strip()
    if len(text) == 10 and text[4] == text[7] == ".":  # the ACR-NEMA form yyyy.mm.dd, still seen
        text = text.replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def study_date(ds: Dataset) -> date | None:
    for keyword in _STUDY_DATE_KEYWORDS:
        value = _dicom_date(_text(ds, keyword))
        if value is not None:
            return value
    return None


def _whole_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_years(ds: Dataset) -> int | None:
    """Whole years of age at the study: Patient's Age, else the birth date against the study date; None if unknown
    or nonsensical (a birth date after the study)."""
    match = _AGE.match(_text(ds, "PatientAge").upper())
    if match:
        number, unit = int(match.group(1)), match.group(2)
        return number if unit == "Y" else int(number * _DAYS_PER_UNIT[unit] // _DAYS_PER_UNIT["Y"])
    born = _dicom_date(_text(ds, "PatientBirthDate"))
    on = study_date(ds)
    if born is None or on is None or born > on:
        return None
    return _whole_years(born, on)


def arrival_from_header(ds: Dataset, *, secret: bytes) -> Arrival:
    """The facts the rules need, read from the original (not yet de-identified) header."""
    return Arrival(modality=_text(ds, "Modality").upper(), body_part=_text(ds, "BodyPartExamined").upper(),
                   view_position=_text(ds, "ViewPosition").upper(), age_years=age_years(ds),
                   study_date=study_date(ds), patient_key=patient_key(ds, secret=secret))


def _refused(code: str, detail: str) -> Decision:
    return Decision(False, code, f"{EXCLUSION_CODES[code]}: {detail}.")


def decide(arrival: Arrival, rules: EligibilityRules, *, enrolled_study_dates: Iterable[date] = ()) -> Decision:
    """Enrol or not, and why. `enrolled_study_dates`: the study dates of this patient's cases already enrolled in the
    trial (looked up by `arrival.patient_key` in the screening log by the caller)."""
    if rules.modalities and arrival.modality not in rules.modalities:
        return _refused("modality", f"{arrival.modality or 'none'} (accepted: {', '.join(rules.modalities)})")
    if rules.body_parts and arrival.body_part not in rules.body_parts:
        return _refused("body_part", f"{arrival.body_part or 'none'} (accepted: {', '.join(rules.body_parts)})")
    if rules.view_positions and arrival.view_position not in rules.view_positions:
        return _refused("view_position",
                        f"{arrival.view_position or 'none'} (accepted: {', '.join(rules.view_positions)})")
    if rules.min_age_years is not None or rules.max_age_years is not None:
        if arrival.age_years is None:
            if not rules.accept_unknown_age:
                return _refused("age_unknown", "the trial needs the age to check its limits")
        elif rules.min_age_years is not None and arrival.age_years < rules.min_age_years:
            return _refused("under_age", f"{arrival.age_years} years (minimum {rules.min_age_years})")
        elif rules.max_age_years is not None and arrival.age_years > rules.max_age_years:
            return _refused("over_age", f"{arrival.age_years} years (maximum {rules.max_age_years})")
    if rules.repeat_window_days is not None and arrival.patient_key and arrival.study_date is not None:
        for earlier in enrolled_study_dates:
            gap = abs((arrival.study_date - earlier).days)  # arrivals may come out of study-date order
            if gap <= rules.repeat_window_days:
                return _refused("repeat", f"another study of this patient {gap} days apart "
                                          f"(window {rules.repeat_window_days} days)")
    return Decision(True)
