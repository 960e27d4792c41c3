"""De-identification as data: PS3.15 Table E.1-1 (the standard's own Basic Profile actions) and the allow-list
of what a de-identified chest radiograph keeps, each kept attribute with the action the table prescribes; no Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import BaseTag, Tag

from .table_e1_1 import EDITION, TABLE_E1_1

Action = Literal["D", "Z", "X", "K", "U"]

# ---------------------------------------------------------------------------------------------
# The standard: Table E.1-1, generated from the standard's data (table_e1_1.py says from where)
# ---------------------------------------------------------------------------------------------


def _parse_pattern(pattern: str) -> tuple[int, int]:
    """"(60xx,4000)" → (value, mask) over the 32-bit tag, each x a free hexadecimal digit."""
    digits = pattern.strip("()").replace(",", "")
    value = int("".join("0" if d == "x" else d for d in digits), 16)
    mask = int("".join("0" if d == "x" else "F" for d in digits), 16)
    return value, mask


_EXACT: Final[Mapping[int, str]] = MappingProxyType({
    _parse_pattern(tag)[0]: action for tag, _, action in TABLE_E1_1 if "x" not in tag and tag != "(gggg,eeee)"
})
_REPEATING: Final = tuple(
    (*_parse_pattern(tag), action) for tag, _, action in TABLE_E1_1 if "x" in tag and tag != "(gggg,eeee)"
)

# Table E.1-1's Basic Profile action for each attribute it lists that pydicom's dictionary names, by keyword:
# D dummy, Z zero length (or a dummy), X remove, U a new UID, or the table's choice among them ("X/Z/D").
BASIC_PROFILE: Final[Mapping[str, str]] = MappingProxyType({
    keyword_for_tag(tag): action for tag, action in _EXACT.items() if dictionary_has_tag(tag) and keyword_for_tag(tag)
})
TABLE_EDITION: Final = EDITION


def table_action(tag: int) -> str | None:
    """Table E.1-1's Basic Profile action for `tag` (private attributes included: X), or None if it is not listed."""
    tag = Tag(tag)
    if tag.is_private:
        return "X"
    action = _EXACT.get(int(tag))
    if action is not None:
        return action
    for value, mask, repeating in _REPEATING:
        if int(tag) & mask == value:
            return repeating
    return None


# ---------------------------------------------------------------------------------------------
# The allow-list: what a de-identified chest radiograph keeps; everything else goes
# ---------------------------------------------------------------------------------------------

# Top-level attributes kept, and how: K as it is, U a new UID (HMAC of the old one), Z zero length, D a dummy.
# The pixels and how to show them; the view; what makes the file a valid CR or DX instance of a study and a
# series (Type 1 and 2 attributes, emptied or replaced where the table says so). Nothing else survives,
# public or private: not the institution, the equipment, the people, the request, the dose or the dates.
KEPT: Final[Mapping[str, Action]] = MappingProxyType({
    # SOP Common
    "SpecificCharacterSet": "K",  # how the kept text is encoded
    "SOPClassUID": "K",  # a class, not an instance: names no one
    "SOPInstanceUID": "U",
    # Patient (the trial writes the case code into name and ID afterwards)
    "PatientName": "Z",
    "PatientID": "Z",
    "PatientBirthDate": "Z",
    "PatientSex": "Z",  # K under the Retain Patient Characteristics Option, see RETAINED_CHARACTERISTICS
    # General Study: Type 2, so present and empty
    "StudyInstanceUID": "U",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "ReferringPhysicianName": "Z",
    "StudyID": "Z",
    "AccessionNumber": "Z",
    # General Series, CR Series, DX Series
    "Modality": "K",
    "SeriesInstanceUID": "U",
    "SeriesNumber": "K",
    "Laterality": "K",
    "BodyPartExamined": "K",
    "PatientPosition": "K",  # erect or supine changes how a chest film is read
    "ViewPosition": "K",  # PA or AP
    "PresentationIntentType": "K",
    # General Equipment: Type 2, so present; empty, since the make says which site a film came from
    "Manufacturer": "Z",
    # General Image, DX Image, DX Anatomy Imaged
    "InstanceNumber": "K",
    "ImageType": "K",
    "ContentDate": "D",  # Type 1 in the DX Image module: a dummy, not the real date
    "ContentTime": "D",
    "PatientOrientation": "K",
    "ImageLaterality": "K",
    "ViewCodeSequence": "K",  # items: SEQUENCE_ITEMS
    "AnatomicRegionSequence": "K",
    "AcquisitionContextSequence": "Z",  # Type 2 in DX: an empty sequence
    "BurnedInAnnotation": "K",
    "RecognizableVisualFeatures": "K",
    "LossyImageCompression": "K",  # a reader must know when the image was compressed with loss
    "LossyImageCompressionRatio": "K",
    "LossyImageCompressionMethod": "K",
    # Image Pixel
    "SamplesPerPixel": "K",
    "PhotometricInterpretation": "K",
    "Rows": "K",
    "Columns": "K",
    "BitsAllocated": "K",
    "BitsStored": "K",
    "HighBit": "K",
    "PixelRepresentation": "K",
    "PlanarConfiguration": "K",
    "PixelAspectRatio": "K",
    "SmallestImagePixelValue": "K",
    "LargestImagePixelValue": "K",
    "NumberOfFrames": "K",
    "PixelPaddingValue": "K",
    "PixelPaddingRangeLimit": "K",
    "ExtendedOffsetTable": "K",
    "ExtendedOffsetTableLengths": "K",
    "PixelData": "K",
    # Display: Modality LUT, VOI LUT, Presentation LUT, and the polarity DX declares
    "RescaleIntercept": "K",
    "RescaleSlope": "K",
    "RescaleType": "K",
    "ModalityLUTSequence": "K",
    "WindowCenter": "K",
    "WindowWidth": "K",
    "VOILUTFunction": "K",
    "VOILUTSequence": "K",
    "PresentationLUTShape": "K",
    "PixelIntensityRelationship": "K",
    "PixelIntensityRelationshipSign": "K",
    # Geometry, for measurements on the image
    "ImagerPixelSpacing": "K",
    "PixelSpacing": "K",
    "PixelSpacingCalibrationType": "K",
    "EstimatedRadiographicMagnificationFactor": "K",
})

_CODE: Final = ("CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue",
                "URNCodeValue")

# What an item of each kept sequence keeps (K), at any depth; everything else in an item goes.
SEQUENCE_ITEMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    "ViewCodeSequence": frozenset({*_CODE, "ViewModifierCodeSequence"}),
    "ViewModifierCodeSequence": frozenset(_CODE),
    "AnatomicRegionSequence": frozenset({*_CODE, "AnatomicRegionModifierSequence"}),
    "AnatomicRegionModifierSequence": frozenset(_CODE),
    "ModalityLUTSequence": frozenset({"LUTDescriptor", "ModalityLUTType", "LUTData"}),
    "VOILUTSequence": frozenset({"LUTDescriptor", "LUTData"}),
})

# Written by the trial itself after the copy: the case code as name and ID, and what was done.
DECLARED: Final = ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
                   "LongitudinalTemporalInformationModified")

# Option 113108 keeps what describes the body, not the person, for readers who need age and sex.
RETAINED_CHARACTERISTICS: Final = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight")

# Where we differ from the letter of Table E.1-1, and why.
BEYOND_PROFILE: Final[Mapping[str, str]] = MappingProxyType({
    "allow-list": "every attribute not in KEPT (or an item attribute not in SEQUENCE_ITEMS) is removed, whatever "
                  "the table says of it: D, Z and U become X, and so do the attributes the table does not list",
    "private attributes": "X, with their private creators, at every depth (no Retain Safe Private Option)",
    "overlay and curve groups (60xx, 50xx)": "X, whole groups: overlays can carry burned-in text",
    "file meta information": "rebuilt: source/sending AE titles and private meta are dropped",
    "a kept value whose VR is not its dictionary VR": "X: e.g. a sequence stored as bytes cannot be inspected",
    "a kept text value too long for its VR or holding control characters":
        "X: a damaged length field makes a value swallow the elements after it",
})

_DEID_METHOD: Final = "PS3.15 E.1 Basic Application Level Confidentiality Profile"
_RETAIN_CHARACTERISTICS_METHOD: Final = "PS3.15 E.3.5 Retain Patient Characteristics Option"


def _tag(keyword: str) -> BaseTag:
    tag = tag_for_keyword(keyword)
    if tag is None:  # a typo in the allow-list must fail loudly at import, not keep or drop silently
        raise KeyError(f"unknown DICOM keyword in the de-identification profile: {keyword}")
    return Tag(tag)


def _check_against_the_table() -> None:
    """A kept attribute that the table lists is kept only as the table allows (the letters of its action), never
    kept as it is; an option may keep what its own column keeps."""
    for keyword, action in KEPT.items():
        listed = table_action(_tag(keyword))
        if listed is None:
            continue
        allowed = {letter.rstrip("*") for letter in listed.split("/")} - {"X"}
        if action not in allowed:
            raise ValueError(f"{keyword} is kept as {action}, but Table E.1-1 says {listed}")
    for keywords in SEQUENCE_ITEMS.values():
        for keyword in keywords:
            if table_action(_tag(keyword)) is not None:
                raise ValueError(f"{keyword} is kept in items, but Table E.1-1 lists it")
    for keyword in [*(k for k, a in KEPT.items() if a == "K"), *(k for ks in SEQUENCE_ITEMS.values() for k in ks)]:
        if dictionary_VR(_tag(keyword)) == "SQ" and keyword not in SEQUENCE_ITEMS:
            raise ValueError(f"{keyword} is a sequence kept without saying what its items keep")


_check_against_the_table()

KEPT_TAGS: Final[Mapping[BaseTag, Action]] = MappingProxyType({_tag(k): a for k, a in KEPT.items()})
ITEM_TAGS: Final[Mapping[BaseTag, frozenset[BaseTag]]] = MappingProxyType({
    _tag(sequence): frozenset(_tag(k) for k in keywords) for sequence, keywords in SEQUENCE_ITEMS.items()
})
