"""Eligibility at arrival (issue 15 item 2): the rules as data, decided on the original header, no PHI out."""
from __future__ import annotations

from datetime import date

import pydicom
import pytest

from tests.dicom_corpus import PHI, radiograph_dataset, real_cr_film
from trial.dicom.eligibility import (
    EXCLUSION_CODES,
    Arrival,
    EligibilityRules,
    age_years,
    arrival_from_header,
    decide,
    patient_key,
)

SECRET = b"0123456789abcdef-trial-secret"


def _arrival(**changes) -> Arrival:
    values = {"modality": "CR", "body_part": "CHEST", "view_position": "PA", "age_years": 54,
              "study_date": date(2026, 3, 2), "patient_key": "k" * 64}
    return Arrival(**{**values, **changes})


def test_an_adult_chest_film_is_eligible_by_default():
    ds = radiograph_dataset()
    decision = decide(arrival_from_header(ds, secret=SECRET), EligibilityRules())
    assert decision.eligible and decision.code == "" and bool(decision)


@pytest.mark.parametrize("changes, code", [
    ({"modality": "CT"}, "modality"),
    ({"body_part": "ABDOMEN"}, "body_part"),
    ({"view_position": "LL"}, "view_position"),
    ({"age_years": None}, "age_unknown"),
    ({"age_years": 17}, "under_age"),
])
def test_each_rule_refuses_with_its_own_code_and_a_sentence_without_phi(changes, code):
    decision = decide(_arrival(**changes), EligibilityRules())
    assert not decision and decision.code == code and decision.reason.startswith(EXCLUSION_CODES[code])


def test_the_first_failing_rule_decides_so_each_arrival_counts_once():
    decision = decide(_arrival(modality="MR", body_part="HEAD", age_years=3), EligibilityRules())
    assert decision.code == "modality"


def test_the_rules_are_data_that_round_trip_and_refuse_nonsense():
    rules = EligibilityRules(modalities=["dx", " cr "], view_positions=(), min_age_years=16, max_age_years=90,
                             accept_unknown_age=True, repeat_window_days=30)
    assert rules.modalities == ("CR", "DX") and EligibilityRules.from_dict(rules.to_dict()) == rules
    assert decide(_arrival(view_position="LL", age_years=None), rules).eligible  # any view; unknown age accepted
    assert decide(_arrival(age_years=91), rules).code == "over_age"
    with pytest.raises(ValueError, match="Unknown eligibility rules"):
        EligibilityRules.from_dict({"min_age": 18})
    with pytest.raises(ValueError, match="above the maximum"):
        EligibilityRules(min_age_years=60, max_age_years=18)
    with pytest.raises(ValueError, match="whole number"):
        EligibilityRules(repeat_window_days=-1)


@pytest.mark.parametrize("age, birth, study, expected", [
    ("071Y", "", "20260302", 71),
    ("006M", "", "20260302", 0),
    ("", "19700302", "20260302", 56),     # the birthday itself
    ("", "19700303", "20260302", 55),     # one day before it
    ("", "20270101", "20260302", None),   # born after the study: nonsense
    ("", "", "20260302", None),
    ("", "19800101", "20260302", 46),
])
def test_age_from_patients_age_else_birth_date_against_study_date(age, birth, study, expected):
    ds = radiograph_dataset()
    ds.PatientAge = age
    ds.PatientBirthDate = birth
    ds.StudyDate = study
    assert age_years(ds) == expected


def test_the_repeat_rule_compares_keyed_hashes_within_the_window_either_way():
    rules = EligibilityRules(repeat_window_days=30)
    arrival = _arrival(study_date=date(2026, 3, 2))
    assert decide(arrival, rules, enrolled_study_dates=[date(2026, 2, 1)]).code == "repeat"   # 29 days before
    assert decide(arrival, rules, enrolled_study_dates=[date(2026, 3, 20)]).code == "repeat"  # came in late
    assert decide(arrival, rules, enrolled_study_dates=[date(2026, 1, 1)]).eligible           # 60 days
    # without a patient id the arrival cannot be matched, so it is never a repeat
    assert decide(_arrival(patient_key=""), rules, enrolled_study_dates=[date(2026, 3, 2)]).eligible


def test_the_patient_key_is_keyed_normalized_and_never_the_id():
    ds = radiograph_dataset()
    key = patient_key(ds, secret=SECRET)
    assert len(key) == 64 and PHI["patient_id"] not in key
    ds2 = radiograph_dataset()
    ds2.PatientID = f"  {PHI['patient_id'].lower()} "
    assert patient_key(ds2, secret=SECRET) == key                         # same patient, however typed
    assert patient_key(ds, secret=b"another-trial-secret-000") != key      # unrelated across trials
    ds2.IssuerOfPatientID = "OTHER HOSPITAL"
    assert patient_key(ds2, secret=SECRET) != key                         # same number, another issuer
    arrival = arrival_from_header(ds, secret=SECRET)
    text = repr(arrival)
    for value in (PHI["patient_id"], PHI["patient_name"], PHI["birth_date"]):
        assert str(value) not in text
    with pytest.raises(ValueError, match="16 bytes"):
        patient_key(ds, secret=b"short")


def test_a_real_cr_film_from_pydicom_data_is_judged_on_its_own_header():
    import io

    ds = pydicom.dcmread(io.BytesIO(real_cr_film()))
    arrival = arrival_from_header(ds, secret=SECRET)
    decision = decide(arrival, EligibilityRules())
    # The film is a CR of the chest? Whatever its header says, the decision names the rule and holds no PHI.
    assert arrival.modality == "CR"
    assert decision.eligible or decision.code in EXCLUSION_CODES
