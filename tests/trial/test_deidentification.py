"""De-identification against the standard: every attribute PS3.15 Table E.1-1 lists is removed or replaced as the
table says, and nothing outside the allow-list survives, public or private, at any depth."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.datadict import DicomDictionary, RepeatersDictionary, dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from tests import dicom_corpus as corpus
from trial.dicom import KEPT, SEQUENCE_ITEMS, TABLE_EDITION, deidentify, dicom_bytes, profile, read_radiograph
from trial.dicom.table_e1_1 import TABLE_E1_1

SECRET = b"per-trial secret, 32 bytes long!"
CASE = "C0042"
DECLARED = set(profile.DECLARED)


def _planted(tag: int) -> str:
    """A distinctive identifying text for `tag`, searched for in the written file afterwards."""
    return f"Doe^Jane {tag:08X}"


def _value(tag: int, vr: str):
    """A value of `vr` for `tag`: identifying where the VR can hold text, distinctive where it can hold a number."""
    n = tag & 0xFFFF
    texts = {"AE": f"AE{n:04X}", "CS": f"CS{n:04X}", "SH": f"SH{n:04X}"[:16], "LO": _planted(tag),
             "LT": _planted(tag), "ST": _planted(tag), "UC": _planted(tag), "UT": _planted(tag),
             "PN": _planted(tag), "UR": f"http://doe.example/{tag:08X}",
             "DA": "19521103", "TM": "101530", "DT": "19521103101530", "AS": "071Y", "DS": "1.5", "IS": "7",
             "UI": f"1.2.826.0.1.3680043.10.543.{tag}"}
    if vr in texts:
        return texts[vr]
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 7
    if vr in ("FL", "FD"):
        return 1.5
    if vr == "AT":
        return 0x00100010
    if vr == "SQ":
        item = Dataset()
        item.PatientName = _planted(tag)
        item.add_new(0x00081155, "UI", f"1.2.826.0.1.3680043.10.543.{tag}.1")  # Referenced SOP Instance UID
        item.private_block(0x0011, "NESTED PRIVATE", create=True).add_new(0x01, "LO", _planted(tag))
        return Sequence([item])
    return _planted(tag).encode()  # OB, OW, OD, OF, OL, OV, UN


def _vr(tag: int) -> str:
    vr = dictionary_VR(tag) if dictionary_has_tag(tag) else "LO"  # newer than pydicom's dictionary: text
    return vr.split(" or ")[0]


def _instances(pattern: str) -> list[int]:
    """The tags a Table E.1-1 row stands for, as they are planted: repeating groups twice (groups 00 and 02)."""
    if pattern == "(gggg,eeee)":
        return []  # private attributes: planted by the corpus at the top level and in items (see below)
    digits = pattern.strip("()").replace(",", "")
    if "x" not in digits:
        return [int(digits, 16)]
    if digits == "50xxxxxx":
        return [0x50003000, 0x50020005]  # Curve Data, Curve Dimensions
    return [int(digits.replace("xx", "00", 1), 16), int(digits.replace("xx", "02", 1), 16)]


@pytest.fixture(scope="module")
def with_every_table_attribute():
    """A DX chest film (with the corpus' planted identifiers and private blocks) that also carries every attribute
    Table E.1-1 lists, each with a value; what the radiograph already has keeps its own value."""
    ds = read_radiograph(corpus.radiograph_bytes(modality="DX"))
    planted = {}
    for pattern, _, action in TABLE_E1_1:
        for tag in _instances(pattern):
            if tag not in ds:
                ds.add(DataElement(tag, _vr(tag), _value(tag, _vr(tag))))
            planted[Tag(tag)] = (pattern, action, ds[tag].value)
    clean, _ = deidentify(ds, case_code=CASE, uid_secret=SECRET)
    return ds, planted, clean, dicom_bytes(clean)


def test_the_table_is_the_standards_whole_table(with_every_table_attribute):
    _, planted, *_ = with_every_table_attribute
    assert TABLE_EDITION == "2026c" and len(TABLE_E1_1) >= 650
    listed = {pattern: action for pattern, _, action in TABLE_E1_1}
    # what the security review found kept: ethnic group, field-of-view labels, contributing equipment
    assert (listed["(0010,2160)"], listed["(0018,11BB)"], listed["(0018,A003)"]) == ("X", "D", "X")
    assert listed["(gggg,eeee)"] == "X" and listed["(60xx,3000)"] == "X"
    assert len(planted) >= 650


def _check(action: str, tag, original, clean, case_code: str) -> str | None:
    """None if `clean` treats `tag` as `action` allows, else what is wrong."""
    if tag not in clean:
        return None  # X, and the stricter reading of every other action: absent
    letters = {letter.rstrip("*") for letter in action.split("/")}
    elem = clean[tag]
    value = elem.value
    empty = value in (None, "", b"") or (elem.VR == "SQ" and len(value) == 0)
    if "Z" in letters and (empty or (tag in (0x00100010, 0x00100020) and value == case_code)):
        return None  # zero length, or the trial's dummy: the case code as name and ID
    if "D" in letters and not empty and value != original and (elem.VR != "SQ" or len(value) == 0):
        return None
    if "U" in letters and elem.VR == "UI" and value != original and pydicom.uid.UID(value).is_valid:
        return None
    return f"{tag} kept as {value!r} (was {original!r}); the table says {action}"


def test_every_attribute_of_table_e1_1_is_removed_or_replaced_as_the_table_says(with_every_table_attribute):
    _, planted, clean, _ = with_every_table_attribute
    wrong = [problem for tag, (_, action, original) in planted.items()
             if (problem := _check(action, tag, original, clean, CASE)) is not None]
    assert wrong == []


def test_only_the_attributes_the_radiograph_needs_are_left_of_the_table(with_every_table_attribute):
    _, planted, clean, _ = with_every_table_attribute
    left = {pydicom.datadict.keyword_for_tag(tag) for tag in planted if tag in clean}
    assert left == {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "SeriesInstanceUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                    "ReferringPhysicianName", "ContentDate", "ContentTime", "AcquisitionContextSequence"}
    assert clean.StudyInstanceUID.startswith("2.25.") and clean.ContentDate == "19000101"


def test_no_planted_text_of_the_table_is_anywhere_in_the_written_file(with_every_table_attribute):
    ds, planted, _, written = with_every_table_attribute
    leaked = [f"{tag}" for tag in planted if _planted(int(tag)).encode() in written]
    leaked += [name for name, value in corpus.PHI.items() if value.encode() in written]
    assert leaked == []


# ----------------------------------------------------------------------------------- the allow-list


def _every_public_attribute(ds: Dataset) -> Dataset:
    """Every attribute of pydicom's dictionary that `ds` lacks, with a value (file meta and command groups aside),
    and instances of the repeating groups. Not those the allow-list keeps: their values are the radiograph's own
    (a kept value is copied as it is, identifying or not; KEPT is short and holds no free text but Rescale Type
    and the code meanings)."""
    kept = {pydicom.datadict.tag_for_keyword(k) for k in [*KEPT, *(k for ks in SEQUENCE_ITEMS.values() for k in ks)]}
    for tag, (vr, *_rest) in DicomDictionary.items():
        if tag >> 16 in (0x0000, 0x0002) or tag in ds or tag in kept or tag in (0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD):
            continue
        vr = vr.split(" or ")[0]
        ds.add(DataElement(tag, vr, _value(tag, vr)))
    for mask, (vr, *_rest) in RepeatersDictionary.items():
        if mask.startswith(("50", "60")):
            for group in ("00", "1E"):
                tag = int(mask.replace("xx", group, 1).replace("x", "0"), 16)
                ds.add(DataElement(tag, vr.split(" or ")[0], _value(tag, vr.split(" or ")[0])))
    return ds


def _with_junk_in_kept_sequences(ds: Dataset) -> Dataset:
    """Identifying attributes, private blocks and a nested sequence of them inside every item the allow-list keeps."""
    junk = Dataset()
    junk.PatientName = "Nested^Deeper"
    junk.InstitutionName = "Nested General Hospital"
    junk.private_block(0x0013, "DEEP PRIVATE", create=True).add_new(0x01, "LO", "Deep private Jane")

    def spoil(item: Dataset) -> None:
        item.PatientName = "Nested^Name"
        item.OperatorsName = "Nested^Operator"
        item.ReferencedImageSequence = Sequence([junk])
        item.private_block(0x0011, "NESTED PRIVATE", create=True).add_new(0x02, "LO", "Nested private Jane")
        item.add_new(0x00089999, "LO", "Nested unknown Jane")  # public, unknown to the dictionary

    for sequence in ("ViewCodeSequence", "AnatomicRegionSequence"):
        if sequence not in ds or not len(ds[sequence].value):
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
            ds.add(DataElement(Tag(pydicom.datadict.tag_for_keyword(sequence)), "SQ", Sequence([code])))
        for item in ds[sequence].value:
            spoil(item)
            for nested in ("ViewModifierCodeSequence", "AnatomicRegionModifierSequence"):
                if nested in item:
                    for inner in item[nested].value:
                        spoil(inner)
    return ds


@pytest.fixture(scope="module")
def with_everything():
    ds = read_radiograph(corpus.radiograph_bytes(modality="DX", voi_lut=True))
    ds = _with_junk_in_kept_sequences(_every_public_attribute(ds))
    ds.add_new(0x00089999, "LO", "Unknown public Jane")
    clean, _ = deidentify(ds, case_code=CASE, uid_secret=SECRET)
    return ds, clean


def _outside_the_allow_list(clean: Dataset, allowed_top: set[str]) -> list[str]:
    found: list[str] = []

    def visit(item: Dataset, allowed: set[str], path: str) -> None:
        for elem in item:
            keyword = elem.keyword or str(elem.tag)
            where = f"{path}{keyword}"
            if elem.tag.is_private or keyword not in allowed:
                found.append(where)
                continue
            if elem.VR == "SQ":
                inner = set(SEQUENCE_ITEMS.get(keyword, ()))
                if keyword == "DeidentificationMethodCodeSequence":
                    inner = {"CodeValue", "CodingSchemeDesignator", "CodeMeaning"}
                for index, child in enumerate(elem.value):
                    visit(child, inner, f"{where}[{index}].")

    visit(clean, allowed_top, "")
    return found


def test_the_input_carries_thousands_of_attributes_public_and_private(with_everything):
    ds, _ = with_everything
    assert len(ds) > 4000
    private = []
    ds.walk(lambda _, elem: private.append(elem.tag) if elem.tag.is_private else None)
    assert len(private) >= 6


def test_nothing_outside_the_allow_list_survives_at_any_depth(with_everything):
    _, clean = with_everything
    assert _outside_the_allow_list(clean, set(KEPT) | DECLARED) == []
    # and what the reader needs is there, down to the codes in the view modifier
    assert clean.ViewCodeSequence[0].ViewModifierCodeSequence[0].CodeMeaning == "erect"
    assert clean.VOILUTSequence[0].LUTDescriptor and "LUTExplanation" not in clean.VOILUTSequence[0]


def test_nothing_outside_the_allow_list_is_in_the_written_file(with_everything):
    _, clean = with_everything
    reread = pydicom.dcmread(io.BytesIO(dicom_bytes(clean)))
    assert _outside_the_allow_list(reread, set(KEPT) | DECLARED) == []
    for text in (b"Nested^Deeper", b"Nested General Hospital", b"Deep private Jane", b"Nested private Jane",
                 b"Nested unknown Jane", b"Unknown public Jane", b"Doe^Jane", b"Nested^Operator"):
        assert text not in dicom_bytes(clean), text


def test_the_retain_patient_characteristics_option_adds_only_its_own_attributes(with_everything):
    ds, _ = with_everything
    clean, _ = deidentify(ds, case_code=CASE, uid_secret=SECRET, retain_patient_characteristics=True)
    assert _outside_the_allow_list(clean, set(KEPT) | DECLARED | set(profile.RETAINED_CHARACTERISTICS)) == []
    assert clean.PatientAge == "071Y"


def test_the_allow_list_cannot_keep_what_the_table_removes(monkeypatch):
    monkeypatch.setattr(profile, "KEPT", {**profile.KEPT, "InstitutionName": "K"})
    with pytest.raises(ValueError, match="InstitutionName is kept as K, but Table E.1-1 says X/Z/D"):
        profile._check_against_the_table()


def test_the_allow_list_cannot_keep_a_uid_as_it_is(monkeypatch):
    monkeypatch.setattr(profile, "KEPT", {**profile.KEPT, "StudyInstanceUID": "K"})
    with pytest.raises(ValueError, match="StudyInstanceUID is kept as K, but Table E.1-1 says U"):
        profile._check_against_the_table()


def test_a_kept_sequence_must_say_what_its_items_keep(monkeypatch):
    monkeypatch.setattr(profile, "KEPT", {**profile.KEPT, "ProcedureCodeSequence": "K"})
    with pytest.raises(ValueError, match="ProcedureCodeSequence is a sequence kept without saying"):
        profile._check_against_the_table()


def test_the_de_identified_file_is_still_a_radiograph_the_platform_accepts(with_every_table_attribute):
    *_, written = with_every_table_attribute
    again = read_radiograph(written)
    assert (again.Modality, again.ViewPosition, again.PatientID) == ("DX", "PA", CASE)
    assert again.PatientIdentityRemoved == "YES"
