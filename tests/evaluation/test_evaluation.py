"""The retrospective evaluation of AI drafts: the table from plain rows, the page and its CSV, who sees them when."""
from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from django.template.defaultfilters import floatformat
from django.utils.html import escape

from ai.metrics import evaluate_reports, rouge_l
from ai.models import AIDraft, ModelVersion
from evaluation import table as evaluation
from evaluation.selectors import NOT_UNBLINDED
from evaluation.table import ReportPair, build_table, report_text
from reading.models import Read, Report
from stats.methods.roc import roc_auc
from tests.signing import move
from tests.stats.test_runs_fixtures import build_trial, complete_trial  # noqa: F401  (fixtures)
from tests.triggers import past_append_only_triggers

FINDINGS = ("pleural effusion", "pneumothorax")


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# ------------------------------------------------------------------------------------- the pure table


def test_the_compared_text_is_findings_then_impression():
    assert report_text("Small left effusion. ", " Effusion.") == "Small left effusion.\nEffusion."
    assert report_text("", "Normal chest.") == "Normal chest."


def test_finding_counts_match_a_hand_count():
    pairs = [
        ReportPair("c1", "standard", "Small left pleural effusion.", "Small left pleural effusion."),  # TP effusion
        ReportPair("c2", "standard", "Small left pleural effusion.", "No pleural effusion."),  # FP effusion
        ReportPair("c3", "standard", "The lungs are clear.", "Right pneumothorax."),  # FN pneumothorax
    ]
    table = build_table(model="m", findings=FINDINGS, pairs=pairs, scores={}, reference=[], n_drafts=3)
    standard = table.arm("standard")
    effusion, pneumothorax = standard.per_finding
    assert (effusion.tp, effusion.fp, effusion.fn, effusion.tn) == (1, 1, 0, 1)
    assert (pneumothorax.tp, pneumothorax.fp, pneumothorax.fn, pneumothorax.tn) == (0, 0, 1, 2)
    assert effusion.precision == 0.5 and effusion.recall == 1.0 and effusion.f1 == pytest.approx(2 / 3)
    assert pneumothorax.f1 == 0.0 and pneumothorax.support == 1
    # micro: tp 1, fp 1, fn 1 pooled; macro: the mean of the two findings
    assert standard.micro_precision == 0.5 and standard.micro_recall == 0.5 and standard.micro_f1 == 0.5
    assert standard.macro_precision == 0.25 and standard.macro_recall == 0.5
    assert standard.macro_f1 == pytest.approx(1 / 3)
    assert standard.n_reports == 3 and standard.n_cases == 3


def test_rouge_l_matches_a_hand_computed_lcs():
    # hypothesis 2 tokens, reference 3, LCS 2: precision 1, recall 2/3, F 0.8
    pairs = [ReportPair("c1", "standard", "Pleural effusion", "small pleural effusion")]
    table = build_table(model="m", findings=FINDINGS, pairs=pairs, scores={}, reference=[], n_drafts=1)
    assert table.arm("standard").rouge_l == pytest.approx(0.8)
    assert rouge_l("Pleural effusion", "small pleural effusion") == pytest.approx(0.8)


def test_each_arm_equals_evaluate_reports_on_its_own_pairs_and_the_arms_are_never_pooled():
    standard = [ReportPair("c1", "standard", "Small left pleural effusion. No pneumothorax.",
                           "Moderate left pleural effusion. No pneumothorax."),
                ReportPair("c2", "standard", "No acute findings.", "Possible small right pneumothorax.")]
    assisted = [ReportPair("c1", "assisted", "Small left pleural effusion. No pneumothorax.",
                           "Small left pleural effusion. No pneumothorax.")]
    table = build_table(model="m", findings=FINDINGS, pairs=standard + assisted, scores={}, reference=[], n_drafts=2)
    for arm, pairs in (("standard", standard), ("assisted", assisted)):
        expected = evaluate_reports([p.draft for p in pairs], [p.report for p in pairs], FINDINGS)
        got = table.arm(arm)
        assert got.evaluation == expected
        assert (got.bleu4, got.rouge_l, got.micro_f1, got.macro_f1) == (
            expected.bleu4, expected.rouge_l, expected.findings.micro_f1, expected.findings.macro_f1)
    assert table.arm("assisted").bleu4 == pytest.approx(1.0)  # an unedited draft: why the arm is shown apart
    assert [a.arm for a in table.arms] == ["standard", "assisted"]


def test_an_arm_without_reports_has_no_numbers():
    table = build_table(model="m", findings=FINDINGS, pairs=[ReportPair("c1", "standard", "a", "a")], scores={},
                        reference=[], n_drafts=1)
    assisted = table.arm("assisted")
    assert assisted.n_reports == 0 and assisted.bleu4 is None and assisted.evaluation is None


def test_an_unknown_arm_is_refused():
    with pytest.raises(ValueError, match="unknown arm 'both'"):
        build_table(model="m", findings=FINDINGS, pairs=[ReportPair("c1", "both", "a", "a")], scores={},
                    reference=[], n_drafts=1)


def test_auc_per_finding_matches_a_hand_count_and_leaves_pending_cases_out():
    # diseased 0.9, 0.4; healthy 0.5, 0.1: of the 4 pairs, 3 ranked right -> 0.75
    scores = {"c1": {"pleural effusion": 0.9}, "c2": {"pleural effusion": 0.4}, "c3": {"pleural effusion": 0.5},
              "c4": {"pleural effusion": 0.1}, "c5": {"pleural effusion": 0.0}}
    reference = [{"case": "c1", "finding": "pleural effusion", "present": True},
                 {"case": "c2", "finding": "pleural effusion", "present": True},
                 {"case": "c3", "finding": "pleural effusion", "present": False},
                 {"case": "c4", "finding": "pleural effusion", "present": False},
                 {"case": "c5", "finding": "pleural effusion", "present": None},  # pending: left out
                 {"case": "c1", "finding": "pneumothorax", "present": True}]
    table = build_table(model="m", findings=FINDINGS, pairs=[], scores=scores, reference=reference, n_drafts=5)
    effusion, pneumothorax = table.auc
    assert effusion.auc == 0.75 and (effusion.n_positive, effusion.n_negative, effusion.n_cases) == (2, 2, 4)
    delong = roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    assert (effusion.se, effusion.low, effusion.high) == (delong.se, delong.low, delong.high)
    assert pneumothorax.auc is None and "no case with both" in pneumothorax.note  # c1 has no pneumothorax score
    assert table.has_reference and table.pending_reference == 1


def test_auc_needs_two_cases_on_each_side():
    scores = {f"c{i}": {"pleural effusion": i / 10} for i in range(5)}
    reference = [{"case": f"c{i}", "finding": "pleural effusion", "present": i == 4} for i in range(5)]
    table = build_table(model="m", findings=FINDINGS, pairs=[], scores=scores, reference=reference, n_drafts=5)
    assert table.auc[0].auc is None and table.auc[0].note == evaluation.TOO_FEW


def test_a_score_that_is_not_a_number_is_left_out():
    scores = {f"c{i}": {"pleural effusion": i / 10} for i in range(4)} | {"c4": {"pleural effusion": "high"},
                                                                        "c5": {"pleural effusion": float("nan")}}
    reference = [{"case": f"c{i}", "finding": "pleural effusion", "present": i % 2 == 1} for i in range(6)]
    table = build_table(model="m", findings=FINDINGS, pairs=[], scores=scores, reference=reference, n_drafts=6)
    assert table.auc[0].n_cases == 4 and table.auc[0].auc == roc_auc([0, 1, 0, 1], [0.0, 0.1, 0.2, 0.3]).auc


def test_without_a_decided_reference_there_is_no_auc():
    reference = [{"case": "c1", "finding": "pleural effusion", "present": None}]
    table = build_table(model="m", findings=FINDINGS, pairs=[], scores={"c1": {"pleural effusion": 0.3}},
                        reference=reference, n_drafts=1)
    assert table.auc == () and not table.has_reference and table.pending_reference == 1


def test_the_csv_holds_every_number_exactly_and_no_formula():
    pairs = [ReportPair("c1", "standard", "Small left pleural effusion.", "Left pleural effusion.")]
    scores = {f"c{i}": {"=cmd": i / 10} for i in range(4)}
    reference = [{"case": f"c{i}", "finding": "=cmd", "present": i >= 2} for i in range(4)]
    table = build_table(model="m", findings=("pleural effusion", "=cmd"), pairs=pairs, scores=scores,
                        reference=reference, n_drafts=4)
    rows = _csv(evaluation.to_csv(table))
    assert list(rows[0]) == list(evaluation.CSV_COLUMNS)
    value = {(r["reference"], r["finding"], r["statistic"]): r["value"] for r in rows}
    assert float(value[("standard_arm_final_reports", "", "bleu4")]) == table.arm("standard").bleu4
    assert float(value[("standard_arm_final_reports", "", "rouge_l")]) == table.arm("standard").rouge_l
    assert value[("standard_arm_final_reports", "pleural effusion", "tp")] == "1"
    assert value[("assisted_arm_final_reports", "", "n_reports")] == "0"
    assert float(value[("reference_standard", "'=cmd", "auc")]) == 1.0
    assert not any(cell.startswith("=") for r in rows for cell in r.values())


# ----------------------------------------------------------------------------------------- the page


def _url(trial, suffix="/"):
    return f"/t/{trial.code}/analysis/ai-evaluation{suffix}"


def _unblind(sim, capture):
    with capture(execute=True):
        move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    sim.refresh()


def _vary_reports(sim):
    """Reports that differ from case to case and arm to arm, and a correction (version 2) on one read."""
    texts = ["Small left pleural effusion.", "No pleural effusion. Right pneumothorax.", "The lungs are clear.",
             "Possible consolidation in the right lower lobe."]
    with past_append_only_triggers():  # set-up: reports are append-only (reading migration 0003)
        for i, read in enumerate(Read.objects.filter(trial=sim.trial).order_by("case__code", "arm")):
            Report.objects.filter(read=read).update(findings=texts[i % len(texts)], impression=f"Impression {i % 3}.")
    read = Read.objects.filter(trial=sim.trial, arm="standard").order_by("case__code").first()
    Report.objects.create(read=read, version=2, findings="Large left pleural effusion.", impression="Effusion.",
                          author=read.reader.user, created_at=datetime(2026, 3, 3, tzinfo=UTC),
                          reason="Second look.")
    return read


def _expected(sim, arm):
    """evaluate_reports on the texts, gathered here without the app's selector."""
    hyps, refs = [], []
    for read in Read.objects.filter(trial=sim.trial, arm=arm).order_by("case__code", "id"):
        final = read.reports.order_by("-version").first()
        draft = AIDraft.objects.get(case=read.case)
        hyps.append(report_text(draft.findings, draft.impression))
        refs.append(report_text(final.findings, final.impression))
    return evaluate_reports(hyps, refs, list(sim.trial.findings))


def _shown(html: str, testid: str) -> str:
    return re.search(rf'data-testid="{re.escape(testid)}">([^<]*)<', html).group(1)


@pytest.mark.django_db
def test_before_unblinding_the_evaluation_is_refused_with_the_reason(complete_trial, client):
    sim = complete_trial()
    assert sim.trial.status == "locked"
    for user in (sim.investigator, sim.statistician):
        client.force_login(user)
        page = client.get(_url(sim.trial))
        assert page.status_code == 403 and escape(NOT_UNBLINDED) in page.content.decode()
        assert "evaluation-summary" not in page.content.decode()
        export = client.get(_url(sim.trial, ".csv"))
        assert export.status_code == 403 and export.content.decode() == NOT_UNBLINDED


@pytest.mark.django_db
def test_only_investigators_and_statisticians_reach_it_even_after_unblinding(complete_trial, client,
                                                                             django_capture_on_commit_callbacks):
    sim = complete_trial()
    _unblind(sim, django_capture_on_commit_callbacks)
    for user in (sim.readers[0], sim.experts[0], sim.outsider):
        client.force_login(user)
        for url in (_url(sim.trial), _url(sim.trial, ".csv")):
            response = client.get(url)
            assert response.status_code == 403, (user, url)
            assert escape(NOT_UNBLINDED) not in response.content.decode()
    client.logout()
    assert client.get(_url(sim.trial)).status_code == 302  # to the login page
    client.force_login(sim.statistician)
    assert client.get(_url(sim.trial)).status_code == 200


@pytest.mark.django_db
def test_the_numbers_on_the_page_are_evaluate_reports_on_the_final_reports(complete_trial, client,
                                                                          django_capture_on_commit_callbacks):
    sim = complete_trial()
    _vary_reports(sim)
    _unblind(sim, django_capture_on_commit_callbacks)
    client.force_login(sim.investigator)
    response = client.get(_url(sim.trial))
    assert response.status_code == 200
    html = response.content.decode()
    table = response.context["table"]
    for arm in ("standard", "assisted"):
        expected = _expected(sim, arm)
        got = table.arm(arm)
        assert got.n_reports == expected.n_cases == Read.objects.filter(trial=sim.trial, arm=arm).count()
        assert got.evaluation == expected
        for name, value in (("bleu4", expected.bleu4), ("rouge_l", expected.rouge_l),
                            ("micro_f1", expected.findings.micro_f1), ("macro_f1", expected.findings.macro_f1),
                            ("micro_precision", expected.findings.micro_precision),
                            ("macro_recall", expected.findings.macro_recall)):
            assert _shown(html, f"{arm}-{name}") == floatformat(value, 3), (arm, name)
    assert table.arm("standard").evaluation.bleu4 > 0  # the varied texts share words with the draft
    assert "unbiased reference" in html and "agreement with it is inflated" in html


@pytest.mark.django_db
def test_the_auc_on_the_page_is_roc_auc_against_the_reference_standard(complete_trial, client,
                                                                      django_capture_on_commit_callbacks):
    sim = complete_trial()
    _unblind(sim, django_capture_on_commit_callbacks)
    client.force_login(sim.statistician)
    response = client.get(_url(sim.trial))
    table = response.context["table"]
    scores = {d.case.code: d.finding_scores for d in AIDraft.objects.filter(case__trial=sim.trial)}
    truth = {(r["case"], r["finding"]): r["present"] for r in sim.scoring["reference_standard"]}
    assert table.has_reference and len(table.auc) == len(sim.trial.findings)
    for i, row in enumerate(table.auc, start=1):
        cases = sorted(c for (c, f) in truth if f == row.finding)
        expected = roc_auc([int(truth[(c, row.finding)]) for c in cases], [scores[c][row.finding] for c in cases])
        assert (row.auc, row.low, row.high) == (expected.auc, expected.low, expected.high)
        assert _shown(response.content.decode(), f"auc-{i}") == floatformat(expected.auc, 3)


@pytest.mark.django_db
def test_the_csv_export_carries_the_page_numbers(complete_trial, client, django_capture_on_commit_callbacks):
    sim = complete_trial()
    _vary_reports(sim)
    _unblind(sim, django_capture_on_commit_callbacks)
    client.force_login(sim.statistician)
    model = ModelVersion.objects.get(trials__trial=sim.trial)
    response = client.get(_url(sim.trial, ".csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="{sim.trial.code}-ai-evaluation-{model.name}.csv"'
    rows = _csv(response.content)
    value = {(r["reference"], r["finding"], r["statistic"]): r["value"] for r in rows}
    assert {r["model"] for r in rows} == {model.name}
    for arm in ("standard", "assisted"):
        expected = _expected(sim, arm)
        ref = f"{arm}_arm_final_reports"
        assert float(value[(ref, "", "bleu4")]) == expected.bleu4
        assert float(value[(ref, "", "rouge_l")]) == expected.rouge_l
        assert float(value[(ref, "", "macro_f1")]) == expected.findings.macro_f1
        for name, counts in expected.findings.per_finding.items():
            assert int(value[(ref, name, "tp")]) == counts.tp and int(value[(ref, name, "fn")]) == counts.fn
    assert {k[1] for k in value if k[0] == "reference_standard"} == set(sim.trial.findings)
    assert client.get(_url(sim.trial, ".csv") + "?model=no-such-model").status_code == 403


@pytest.mark.django_db
def test_another_model_version_is_evaluated_on_its_own_drafts(complete_trial, client,
                                                              django_capture_on_commit_callbacks):
    sim = complete_trial()
    _unblind(sim, django_capture_on_commit_callbacks)
    other = ModelVersion.objects.create(name="other-model", backend="http", url="http://127.0.0.1:9/v1")
    case = sim.trial.cases.order_by("code").first()
    AIDraft.objects.create(case=case, model_version=other, status="ready", findings="Right pneumothorax.",
                           impression="Pneumothorax.", finding_scores={"pneumothorax": 0.8})
    client.force_login(sim.investigator)
    response = client.get(_url(sim.trial) + "?model=other-model")
    assert response.status_code == 200
    table = response.context["table"]
    assert table.model == "other-model" and table.n_drafts == 1
    assert {a.n_cases for a in table.arms} == {1}
    assert 'value="other-model" selected' in response.content.decode()
    # the default is the trial's own model
    assert client.get(_url(sim.trial)).context["table"].model == ModelVersion.objects.get(trials__trial=sim.trial).name
