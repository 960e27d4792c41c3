"""The retrospective evaluation of a model's drafts against a trial's final reports (the paper's table); no Django.

Built from plain rows (evaluation.selectors gathers them): one row per final report with the
draft of its case, the model's finding scores per case, and the reference standard per case and
finding. For each arm it gives corpus BLEU-4, mean ROUGE-L and the labeler's finding-level
precision/recall/F1 (micro and macro), all from ai.metrics.evaluate_reports on the same texts; and
for each finding the AUC of the model's score against the reference standard, with DeLong's
interval (stats.methods.roc).

The standard arm's reports were written without the AI and are the unbiased reference. The assisted
arm's reports were edited from the draft itself, so their agreement with it is inflated; they are
shown apart, never pooled. A draft is compared with every final report of its case in an arm (one
per reader who read it), so a case read twice in an arm counts twice there.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ai.metrics import FindingCounts, ReportEvaluation, UncertainPolicy, evaluate_reports
from stats.exports import csv_bytes
from stats.methods.roc import roc_auc

# The unbiased comparison first.
ARMS = ("standard", "assisted")
ARM_TITLES = {
    "standard": "Standard-arm final reports (written without the AI: the unbiased reference)",
    "assisted": "Assisted-arm final reports (edited from the draft: agreement inflated)",
}
CSV_COLUMNS = ("model", "reference", "finding", "statistic", "value")
TOO_FEW = "needs at least two cases with and two without the finding in the reference standard"


@dataclass(frozen=True)
class ReportPair:
    """A draft and one final report of the same case."""

    case: str
    arm: str  # "standard" or "assisted": the arm of the read whose final report this is
    draft: str
    report: str


@dataclass(frozen=True)
class FindingRow(FindingCounts):
    """ai.metrics' counts of one finding, with its name; `support`: reports whose final report names it."""

    finding: str


@dataclass(frozen=True)
class ArmEvaluation:
    arm: str
    title: str
    n_reports: int
    n_cases: int
    bleu4: float | None  # None when the arm has no report to compare with
    rouge_l: float | None
    micro_precision: float | None
    micro_recall: float | None
    micro_f1: float | None
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    per_finding: tuple[FindingRow, ...]
    evaluation: ReportEvaluation | None


@dataclass(frozen=True)
class AUCRow:
    finding: str
    n_cases: int  # cases with both a score and a decided reference
    n_positive: int
    n_negative: int
    auc: float | None
    se: float | None
    low: float | None
    high: float | None
    note: str  # why there is no AUC, when there is none


@dataclass(frozen=True)
class EvaluationTable:
    model: str
    findings: tuple[str, ...]
    uncertain: UncertainPolicy
    n_drafts: int  # the model's ready drafts of the trial's cases
    arms: tuple[ArmEvaluation, ...]
    auc: tuple[AUCRow, ...]
    has_reference: bool  # any decided reference-standard value at all
    pending_reference: int  # case × finding values still waiting for adjudication

    def arm(self, name: str) -> ArmEvaluation:
        return next(a for a in self.arms if a.arm == name)


def report_text(findings: str, impression: str) -> str:
    """The text compared: findings, then impression, as the paper scores the whole report."""
    return "\n".join(part.strip() for part in (findings or "", impression or "") if part and part.strip())


def _arm(arm: str, pairs: Sequence[ReportPair], findings: Sequence[str], uncertain: UncertainPolicy) -> ArmEvaluation:
    if not pairs:
        return ArmEvaluation(arm, ARM_TITLES.get(arm, arm), 0, 0, None, None, None, None, None, None, None, None,
                             (), None)
    ev = evaluate_reports([p.draft for p in pairs], [p.report for p in pairs], findings, uncertain=uncertain)
    fs = ev.findings
    rows = tuple(FindingRow(**vars(c), finding=name) for name, c in fs.per_finding.items())
    return ArmEvaluation(arm, ARM_TITLES.get(arm, arm), len(pairs), len({p.case for p in pairs}), ev.bleu4,
                         ev.rouge_l, fs.micro_precision, fs.micro_recall, fs.micro_f1, fs.macro_precision,
                         fs.macro_recall, fs.macro_f1, rows, ev)


def _auc(finding: str, scores: Mapping[str, Mapping[str, float]], reference: Mapping[tuple[str, str], bool]) -> AUCRow:
    cases = sorted(case for (case, f) in reference if f == finding and scores.get(case, {}).get(finding) is not None)
    truth = [int(bool(reference[(case, finding)])) for case in cases]
    values = [float(scores[case][finding]) for case in cases]
    m, n = sum(truth), len(truth) - sum(truth)
    if not cases:
        return AUCRow(finding, 0, 0, 0, None, None, None, None, "no case with both a score and a reference value")
    if m < 2 or n < 2:
        return AUCRow(finding, len(cases), m, n, None, None, None, None, TOO_FEW)
    result = roc_auc(truth, values)
    return AUCRow(finding, len(cases), m, n, result.auc, result.se, result.low, result.high, "")


def build_table(
    *,
    model: str,
    findings: Sequence[str],
    pairs: Iterable[ReportPair],
    scores: Mapping[str, Mapping[str, float | None]],
    reference: Iterable[Mapping[str, Any]],
    n_drafts: int,
    uncertain: UncertainPolicy = "positive",
) -> EvaluationTable:
    """The table for one model version.

    `scores`: case → finding → the model's score in [0, 1]. `reference`: rows with case, finding and
    present (True, False, or None while pending; pending rows are left out of the AUC).
    """
    findings = tuple(findings)
    pairs = list(pairs)
    unknown = {p.arm for p in pairs} - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arm {sorted(unknown)[0]!r}")
    arms = tuple(_arm(arm, [p for p in pairs if p.arm == arm], findings, uncertain) for arm in ARMS)
    decided: dict[tuple[str, str], bool] = {}
    pending = 0
    for row in reference:
        if row["finding"] not in findings:
            continue
        if row["present"] is None:
            pending += 1
        else:
            decided[(row["case"], row["finding"])] = bool(row["present"])
    # A score that is not a finite number (a model's garbage) is left out, not guessed.
    clean = {case: {f: float(s) for f, s in (by_finding or {}).items()
                    if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)}
             for case, by_finding in scores.items()}
    auc = tuple(_auc(f, clean, decided) for f in findings) if decided else ()
    return EvaluationTable(model=model, findings=findings, uncertain=uncertain, n_drafts=n_drafts, arms=arms,
                           auc=auc, has_reference=bool(decided), pending_reference=pending)


def csv_rows(table: EvaluationTable) -> list[tuple[Any, ...]]:
    """The table in long format (CSV_COLUMNS); an empty finding is the whole report or an average."""
    rows: list[tuple[Any, ...]] = []
    for arm in table.arms:
        ref = f"{arm.arm}_arm_final_reports"
        rows += [(table.model, ref, "", "n_reports", arm.n_reports), (table.model, ref, "", "n_cases", arm.n_cases)]
        if arm.evaluation is None:
            continue
        for stat in ("bleu4", "rouge_l", "micro_precision", "micro_recall", "micro_f1", "macro_precision",
                     "macro_recall", "macro_f1"):
            rows.append((table.model, ref, "", stat, getattr(arm, stat)))
        for f in arm.per_finding:
            for stat in ("tp", "fp", "fn", "tn", "support", "precision", "recall", "f1"):
                rows.append((table.model, ref, f.finding, stat, getattr(f, stat)))
    for a in table.auc:
        for stat in ("n_cases", "n_positive", "n_negative", "auc", "se", "low", "high"):
            rows.append((table.model, "reference_standard", a.finding, f"auc_{stat}" if stat in ("se", "low", "high")
                         else stat, getattr(a, stat)))
    return rows


def to_csv(table: EvaluationTable) -> bytes:
    """RFC 4180 CSV, UTF-8; numbers as Python writes them (repr), an empty cell when there is no value. A finding
    name is typed by an investigator: stats.exports.csv_bytes escapes text a spreadsheet would run as a formula."""
    return csv_bytes(CSV_COLUMNS, csv_rows(table))
