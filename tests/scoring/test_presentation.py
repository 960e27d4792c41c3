"""The canonical presentation (scoring.normalize, rules 7–11) and the aligned pair display: the style cue narrowed,
nothing hidden."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from core.errors import WrongStatus
from reading import services as reading_services
from reading.models import Report
from scoring import selectors, services
from scoring.models import Item, ScoringSettings
from scoring.normalize import canonical_section, normalize_report, normalize_section, text_hash
from tests.scoring.helpers import answer_before, mine
from tests.scoring.style_data import demo_like
from trial import services as trial_services


@pytest.mark.parametrize("draft, reader", [
    # the same findings and impression, in the AI draft's stock phrasing and in a reader's own
    (("The cardiomediastinal silhouette is within normal limits. The lungs are clear. There is no pleural effusion "
      "or pneumothorax. No acute osseous abnormality.", "No acute cardiopulmonary process."),
     ("Lungs are clear bilaterally. Normal cardiomediastinal silhouette. No pneumothorax. No evidence of pleural "
      "effusion. No acute bony abnormality.", "No acute cardiopulmonary abnormality.")),
    (("The heart size is normal. There is a small left pleural effusion. No pneumothorax is seen.",
      "Small left pleural effusion."),
     ("Small left-sided pleural effusion is present. Heart size is within normal limits. There is no pneumothorax.",
      "Small left pleural effusion.")),
    (("The heart is enlarged. There is consolidation in the right lower lobe. No focal consolidation, pleural "
      "effusion, or pneumothorax elsewhere.", "Right lower lobe pneumonia. Cardiomegaly."),
     ("Cardiomegaly. Consolidation in the right lower lobe. No focal consolidation, pleural effusion, or pneumothorax "
      "elsewhere.", "Right lower lobe pneumonia. Cardiomegaly.")),
    (("Bilateral perihilar oedema, in keeping with failure. Bibasal atelectasis.", "Pulmonary oedema."),
     ("There is bilateral perihilar edema, consistent with failure. There is bibasilar atelectasis.",
      "Pulmonary edema.")),
])
def test_reports_differing_only_in_stock_phrasing_have_one_canonical_form(draft, reader):
    a = normalize_report(findings=draft[0], impression=draft[1], canonical=True)
    b = normalize_report(findings=reader[0], impression=reader[1], canonical=True)
    assert a == b and text_hash(a) == text_hash(b)
    # as written (today's uniform layout) they differ: the canonical presentation is what makes them one
    assert normalize_report(findings=draft[0], impression=draft[1]) != normalize_report(findings=reader[0],
                                                                                        impression=reader[1])


@pytest.mark.parametrize("raw, shown", [
    ("There is a small left pleural effusion.", "Small left pleural effusion."),
    ("A small left pneumothorax is present.", "Small left pneumothorax."),
    ("No evidence of pneumothorax.", "No pneumothorax."),
    ("No definite evidence of pneumothorax.", "No definite pneumothorax."),
    ("The heart is not enlarged.", "Normal heart size."),
    ("No focal consolidation, pleural effusion, or pneumothorax.",
     "No focal consolidation.\nNo pleural effusion.\nNo pneumothorax."),
    ("No pleural effusion and no pneumothorax.", "No pleural effusion.\nNo pneumothorax."),
    ("No acute fracture or dislocation.", "No acute fracture or dislocation."),  # not a list of findings: kept
    ("Nothing is seen.", "Nothing is seen."),
    ("Left basal opacity?", "Left basal opacity?"),  # a question stays a question
    ("2cm nodule in the right upper lobe.", "2 cm nodule in the right upper lobe."),
])
def test_one_wording_per_statement(raw, shown):
    assert canonical_section(raw, reorder=False) == shown


def test_findings_follow_one_anatomical_order_and_a_pronoun_stays_with_what_it_speaks_of():
    shown = canonical_section("Left lower lobe opacity. This may represent pneumonia. No pneumothorax. The heart is "
                              "enlarged. Comparison: 2024 film. No acute bony abnormality. ET tube 4 cm above the "
                              "carina.", reorder=True)
    assert shown.split("\n") == ["Comparison: 2024 film.", "ET tube 4 cm above the carina.", "Cardiomegaly.",
                                 "Left lower lobe opacity.", "This may represent pneumonia.", "No pneumothorax.",
                                 "No acute osseous abnormality."]


def test_the_impression_keeps_the_readers_order():
    report = normalize_report(findings="", impression="No pneumothorax. Right lower lobe pneumonia.", canonical=True)
    assert report.impression == "No pneumothorax.\nRight lower lobe pneumonia."


def test_the_canonical_form_hides_nothing():
    """On demo-like reports (drafts, edited drafts, readers' own): no statement is lost, and every number, side,
    negation and question mark of the uniform layout is still there."""
    raw, drafts = demo_like(150, seed=11)
    texts = [t for assisted, standard in raw for t in (assisted, standard)] + drafts
    for findings, impression in texts:
        for section, reorder in ((findings, True), (impression, False)):
            before, after = normalize_section(section), canonical_section(section, reorder=reorder)
            assert len(after.split("\n")) >= len(before.split("\n")), (before, after)
            for pattern in (r"\d+(?:\.\d+)?", r"\b(?:left|right|bilateral)\b", r"\?"):
                assert sorted(re.findall(pattern, before, re.I)) == sorted(re.findall(pattern, after, re.I)), \
                    (pattern, before, after)
            for statement in before.split("\n"):  # a negation stays one ("not enlarged" may read "Normal ...")
                if re.search(r"\b(?:no|not|without)\b", statement, re.I):
                    rewritten = canonical_section(statement, reorder=False)
                    assert re.search(r"\b(?:no|not|without)\b|^Normal ", rewritten, re.I), (statement, rewritten)


# ------------------------------------------------------------------------------------------ the trial's setting


def test_items_of_a_trial_with_the_canonical_presentation_show_the_canonical_text(scoring_trial, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, move=False, code="cp")
    services.update_settings(trial=trial, by=investigator, canonical_text=True, aligned_pair=True)
    services.build_items(trial=trial, by=investigator)
    for report in Report.objects.filter(read__trial=trial):
        shown = Item.objects.get(trial=trial, unit=f"q:{report.read_id}").shown_reports.get()
        expected = normalize_report(findings=report.findings, impression=report.impression, canonical=True)
        assert (shown.findings, shown.impression) == (expected.findings, expected.impression)
        assert shown.text_hash == text_hash(expected)


@pytest.mark.parametrize("canonical, superseded", [(True, 0), (False, 2)])
def test_a_correction_of_wording_only_supersedes_nothing_in_the_canonical_presentation(scoring_trial, investigator,
                                                                                       canonical, superseded):
    """Items compare what they show: in the canonical presentation a rewording of a stock phrase shows the same."""
    trial, readers, experts, cases = scoring_trial(n_cases=1, move=False, code="cw2")
    services.update_settings(trial=trial, by=investigator, canonical_text=canonical)
    services.build_items(trial=trial, by=investigator)
    report = Report.objects.filter(read__case=cases[0], read__arm="standard").select_related("read__reader__user").get()
    findings = report.findings.replace("Heart size normal.", "The heart is not enlarged.")
    assert findings != report.findings
    reading_services.correct_report(read_id=report.read.pk, by=report.read.reader.user, findings=findings,
                                    impression=report.impression, finding_flags={}, reason="Wording.")
    assert services.build_items(trial=trial, by=investigator).superseded == superseded  # its quality item and pair


def test_the_presentation_and_the_question_are_frozen_once_items_exist(scoring_trial, investigator):
    trial, *_ = scoring_trial(n_cases=1, code="fz")
    before = ScoringSettings.objects.filter(trial=trial).count()
    for change in ({"canonical_text": True}, {"aligned_pair": True}, {"ask_which_assisted": True}):
        with pytest.raises(WrongStatus, match="frozen once scoring items exist"):
            services.update_settings(trial=trial, by=investigator, **change)
    assert ScoringSettings.objects.filter(trial=trial).count() == before
    assert not selectors.settings_of(trial).canonical_text


def test_the_aligned_pair_shows_both_reports_whole_in_rows_of_equal_height(scoring_trial, investigator):
    trial, readers, experts, cases = scoring_trial(n_cases=1, move=False, code="al")
    services.update_settings(trial=trial, by=investigator, aligned_pair=True)
    with_items = trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    services.build_items(trial=with_items, by=investigator)
    pair = mine(experts[0], kind="pair")[0]
    answer_before(pair, experts[0])
    client = Client()
    client.force_login(experts[0])
    page = client.get(f"/t/{trial.code}/score/{pair.key}/").content.decode()
    assert 'data-testid="aligned-pair"' in page
    for shown in pair.item.shown_reports.all():
        for line in (shown.findings + "\n" + shown.impression).split("\n"):
            assert line in page  # the whole text of both reports, nothing cut
    view = selectors.item_view(assignment=pair)
    assert view["aligned"] is True
    quality = mine(experts[0], kind="quality")[0]
    assert selectors.item_view(assignment=quality)["aligned"] is False
