"""The report labeler on a table of sentences: negation, uncertainty, scope, synonyms, unknown findings."""
from __future__ import annotations

import pytest

from ai.labeler import KNOWN_FINDINGS, FindingLabel, label_report, label_report_detailed

SIX = ("pleural effusion", "pneumothorax", "consolidation", "atelectasis", "cardiomegaly", "lung opacity")
P, A, U = "present", "absent", "uncertain"

# (report text, the statuses expected; every finding not listed must come out "absent")
TABLE = [
    # pleural effusion
    ("No pleural effusion.", {"pleural effusion": A}),
    ("Small left effusion.", {"pleural effusion": P}),
    ("There is a moderate right pleural effusion.", {"pleural effusion": P}),
    ("Effusion has resolved.", {"pleural effusion": A}),
    ("The left pleural effusion has since resolved.", {"pleural effusion": A}),
    ("Interval resolution of the right effusion.", {"pleural effusion": A}),
    ("Blunting of the left costophrenic angle.", {"pleural effusion": P}),
    ("The costophrenic angles are blunted.", {"pleural effusion": P}),
    ("No blunting of the costophrenic angles.", {"pleural effusion": A}),
    ("A small amount of pleural fluid on the right.", {"pleural effusion": P}),
    ("Small pericardial effusion.", {}),
    ("Possible small left pleural effusion.", {"pleural effusion": U}),
    ("No change in the small left pleural effusion.", {"pleural effusion": P}),
    ("Left pleural effusion, not significantly changed.", {"pleural effusion": P}),
    ("Bilateral effusions are unchanged.", {"pleural effusion": P}),
    ("Negative for pleural effusion.", {"pleural effusion": A}),
    ("The left effusion has resolved. Small right effusion.", {"pleural effusion": P}),
    ("No evidence of pleural effusion.", {"pleural effusion": A}),
    ("Free of effusion.", {"pleural effusion": A}),
    # pneumothorax
    ("Cannot exclude pneumothorax.", {"pneumothorax": U}),
    ("A small apical pneumothorax cannot be excluded.", {"pneumothorax": U}),
    ("Pneumothorax is not excluded.", {"pneumothorax": U}),
    ("Small right apical pneumothorax.", {"pneumothorax": P}),
    ("No pneumothorax.", {"pneumothorax": A}),
    ("Pneumothorax is no longer seen.", {"pneumothorax": A}),
    ("Questionable tiny left apical PTX.", {"pneumothorax": U}),
    ("Bilateral pneumothoraces.", {"pneumothorax": P}),
    ("Suspected right pneumothorax?", {"pneumothorax": U}),
    ("Left pneumothorax?", {"pneumothorax": U}),
    ("Right hydropneumothorax.", {"pneumothorax": P, "pleural effusion": P}),
    ("No pneumothorax, small left effusion.", {"pneumothorax": A, "pleural effusion": P}),
    ("No pneumothorax is identified.", {"pneumothorax": A}),
    ("Pneumothorax is absent.", {"pneumothorax": A}),
    # lists under one negation
    ("No pleural effusion or pneumothorax.", {"pleural effusion": A, "pneumothorax": A}),
    ("There is no focal consolidation, pleural effusion, or pneumothorax.",
     {"consolidation": A, "pleural effusion": A, "pneumothorax": A}),
    ("No focal airspace consolidation, pleural effusion, pneumothorax or cardiomegaly.",
     {"consolidation": A, "pleural effusion": A, "pneumothorax": A, "cardiomegaly": A}),
    ("Without effusion or pneumothorax.", {"pleural effusion": A, "pneumothorax": A}),
    # scope ends at a terminator
    ("No focal consolidation, but there is left basilar atelectasis.", {"consolidation": A, "atelectasis": P}),
    ("No effusion; however, a small pneumothorax is present.", {"pleural effusion": A, "pneumothorax": P}),
    ("No consolidation although there is right basal atelectasis.", {"consolidation": A, "atelectasis": P}),
    ("No pneumothorax and there is a small effusion.", {"pneumothorax": A, "pleural effusion": P}),
    ("No acute osseous abnormality. Right lower lobe consolidation.", {"consolidation": P}),
    ("Lungs are clear except for left basilar atelectasis.", {"atelectasis": P, "consolidation": A, "lung opacity": A}),
    # cardiomegaly
    ("The heart is normal in size.", {"cardiomegaly": A}),
    ("Cardiomegaly.", {"cardiomegaly": P}),
    ("Heart size is enlarged.", {"cardiomegaly": P}),
    ("The cardiac silhouette is mildly enlarged.", {"cardiomegaly": P}),
    ("Enlarged cardiac silhouette.", {"cardiomegaly": P}),
    ("Increased cardiothoracic ratio.", {"cardiomegaly": P}),
    ("The heart is not enlarged.", {"cardiomegaly": A}),
    ("Heart size is within normal limits.", {"cardiomegaly": A}),
    ("Normal heart size.", {"cardiomegaly": A}),
    ("The cardiomediastinal silhouette is within normal limits.", {"cardiomegaly": A}),
    ("Heart size is at the upper limits of normal.", {"cardiomegaly": A}),
    ("Borderline cardiomegaly.", {"cardiomegaly": U}),
    ("Heart size is borderline.", {"cardiomegaly": U}),
    ("Stable moderate cardiomegaly.", {"cardiomegaly": P}),
    ("No cardiomegaly.", {"cardiomegaly": A}),
    ("Known heart failure with increased vascular markings.", {}),
    ("The heart is not enlarged, left pleural effusion.", {"cardiomegaly": A, "pleural effusion": P}),
    ("Possible cardiomegaly.", {"cardiomegaly": U}),
    # lungs, consolidation, atelectasis, opacity
    ("The lungs are clear.", {"consolidation": A, "atelectasis": A, "lung opacity": A}),
    ("The lungs are well expanded and clear.", {"consolidation": A, "atelectasis": A, "lung opacity": A}),
    ("Clear lungs.", {"consolidation": A, "atelectasis": A, "lung opacity": A}),
    ("Right lower lobe airspace disease.", {"consolidation": P}),
    ("Dense consolidation with air bronchograms.", {"consolidation": P}),
    ("Consolidation may represent pneumonia.", {"consolidation": P}),
    ("Opacity may represent atelectasis or consolidation.", {"lung opacity": P, "atelectasis": U, "consolidation": U}),
    ("Left basilar opacity, likely atelectasis.", {"lung opacity": P, "atelectasis": U}),
    ("Findings likely represent atelectasis rather than consolidation.", {"atelectasis": U, "consolidation": A}),
    ("Atelectasis rather than consolidation.", {"atelectasis": P, "consolidation": A}),
    ("Left lower lobe collapse with volume loss.", {"atelectasis": P}),
    ("Bibasilar atelectatic changes.", {"atelectasis": P}),
    ("Hazy opacity in the right mid zone.", {"lung opacity": P}),
    ("Patchy infiltrates in both lower zones.", {"lung opacity": P}),
    ("Ill-defined opacification of the left upper zone.", {"lung opacity": P}),
    ("No focal opacity.", {"lung opacity": A}),
    ("Increased haziness at the right base.", {"lung opacity": P}),
    ("Suspicious for right lower lobe consolidation.", {"consolidation": U}),
    ("Findings suggestive of consolidation.", {"consolidation": U}),
    ("No definite consolidation.", {"consolidation": A}),
    ("Consolidation has cleared.", {"consolidation": A}),
    # reports, capitals, headings, several sentences
    ("FINDINGS: No pleural effusion. IMPRESSION: Small right pneumothorax.",
     {"pleural effusion": A, "pneumothorax": P}),
    ("IMPRESSION:\nNo acute cardiopulmonary process.", {}),
    ("NO PNEUMOTHORAX.", {"pneumothorax": A}),
    ("", {}),
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[t[:60] or "empty" for t, _ in TABLE])
def test_sentence_table(text, expected):
    labels = label_report(text, SIX)
    assert labels == {name: expected.get(name, A) for name in SIX}


def test_the_table_is_long_enough():
    assert len(TABLE) >= 40


def test_not_mentioned_is_absent_but_reported_as_not_mentioned():
    detailed = label_report_detailed("The lungs are clear.", SIX)
    assert detailed["pneumothorax"] == FindingLabel(status="absent", mentioned=False, sentence="", cue="")
    assert detailed["consolidation"].mentioned and detailed["consolidation"].status == "absent"
    assert detailed["consolidation"].sentence == "The lungs are clear."


def test_the_deciding_sentence_and_cue_are_given():
    text = "Heart size is normal. Small left effusion. Cannot exclude a tiny pneumothorax."
    detailed = label_report_detailed(text, SIX)
    assert detailed["pleural effusion"] == FindingLabel("present", True, "Small left effusion.", "")
    assert detailed["pneumothorax"].status == "uncertain"
    assert detailed["pneumothorax"].sentence == "Cannot exclude a tiny pneumothorax."
    assert detailed["pneumothorax"].cue == "cannot exclude"


def test_present_beats_uncertain_beats_absent_across_sentences():
    text = "No pneumothorax on the left. Possible small right pneumothorax. No effusion. Left effusion."
    assert label_report(text, ["pneumothorax", "pleural effusion"]) == {"pneumothorax": U, "pleural effusion": P}


def test_unknown_findings_are_matched_by_name_and_plural():
    findings = ["pneumonia", "pulmonary nodule", "Support Device", "rib fracture"]
    text = "Right lower lobe pneumonia. No pulmonary nodules. Support devices in place. Possible rib fractures."
    assert label_report(text, findings) == {
        "pneumonia": P, "pulmonary nodule": A, "Support Device": P, "rib fracture": U,
    }


def test_an_unknown_finding_not_mentioned_is_absent():
    assert label_report("No effusion.", ["pulmonary edema"]) == {"pulmonary edema": A}


def test_finding_names_are_matched_whatever_their_case_and_aliases():
    labels = label_report("Small left effusion. Enlarged heart.", ["Pleural Effusion", "effusion", "Cardiomegaly"])
    assert labels == {"Pleural Effusion": P, "effusion": P, "Cardiomegaly": P}


def test_the_six_findings_are_known():
    assert set(SIX) <= set(KNOWN_FINDINGS)


def test_a_single_string_as_findings_is_refused():
    with pytest.raises(TypeError, match="not one string"):
        label_report("No effusion.", "pleural effusion")


def test_labelling_is_deterministic():
    text = "No focal consolidation, but there is left basilar atelectasis. Heart size is borderline."
    assert all(label_report(text, SIX) == label_report(text, SIX) for _ in range(5))
