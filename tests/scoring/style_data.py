"""Report pairs for the style-check tests: synthetic pairs with and without a stock phrase, and demo-like pairs.

Demo-like: the demo's own words. The demo model is trained to write the phantoms' templated reports
(demo.phantoms.report), so a draft here is such a report, of the findings the model would call (it misses one
now and then); the assisted and the standard report are written as demo.simulation writes them (the reader
keeps the draft and appends what it missed; the reader without AI writes "There is X." per finding seen, or a
fixed normal report). This mirrors demo/simulation.py's _assisted_report and _standard_report; if those
change, change it here too.
"""
from __future__ import annotations

import numpy as np

from ai.labeler import label_report
from demo.phantoms import FINDINGS, random_findings
from demo.phantoms.findings import FindingDetail, _finding_params
from demo.phantoms.report import _report
from scoring.normalize import normalize_report
from scoring.style_check import ReportPair

NORMALS = ["Heart size is normal.", "The lungs are clear.", "No pleural effusion.", "No pneumothorax.",
           "Normal mediastinal contours.", "No acute osseous abnormality.", "No free air under the diaphragm."]
FINDING_SENTENCES = ["Small left pleural effusion.", "Right lower lobe consolidation.", "Mild cardiomegaly.",
                     "Left apical pneumothorax.", "Bibasilar atelectasis.", "Hazy opacity in the right mid zone."]
STOCK = "No acute cardiopulmonary abnormality is identified on this examination."


def synthetic_pairs(n: int, *, seed: int, stock_phrase: bool) -> list[ReportPair]:
    """Both reports drawn from the same sentences with the same length distribution; with `stock_phrase`, the
    assisted one also carries the draft's stock sentence (and the standard one never does)."""
    rng = np.random.default_rng(seed)

    def report() -> list[str]:
        k = int(rng.integers(2, 6))
        lines = [NORMALS[i] for i in sorted(rng.choice(len(NORMALS), size=k, replace=False))]
        if rng.random() < 0.6:
            lines.insert(int(rng.integers(0, len(lines) + 1)), FINDING_SENTENCES[int(rng.integers(6))])
        return lines

    pairs = []
    for _ in range(n):
        assisted, standard = report(), report()
        if stock_phrase:
            # the same length either way: the stock sentence replaces one, so only its presence tells
            assisted[int(rng.integers(len(assisted)))] = STOCK
        pairs.append(ReportPair(assisted="\n".join(assisted), standard="\n".join(standard)))
    return pairs


def _details(name: str, rng: np.random.Generator) -> FindingDetail:
    p = _finding_params(name, rng)
    return FindingDetail(side=p.side, size=p.size, zone=p.zone, kind=p.kind, box=(0, 0, 0, 0))


def _standard(labels: dict[str, bool], rng) -> tuple[str, str]:
    seen = {f: (present and rng.random() < 0.78) or (not present and rng.random() < 0.04)
            for f, present in labels.items()}
    positives = [f for f, v in seen.items() if v]
    if not positives:
        return ("The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.",
                "No acute cardiopulmonary abnormality.")
    return " ".join(f"There is {f}." for f in positives), ", ".join(positives).capitalize() + "."


def _assisted(draft_findings: str, draft_impression: str, labels: dict[str, bool], rng) -> tuple[str, str]:
    called = {f: s == "present" for f, s in label_report(f"{draft_findings}\n{draft_impression}",
                                                         list(labels)).items()}
    seen = {}
    for f, present in labels.items():
        if called.get(f) == present:
            seen[f] = present if rng.random() < 0.97 else not present
        else:
            seen[f] = present if rng.random() < 0.9 else called.get(f, False)
    findings, impression = draft_findings, draft_impression
    missed = [f for f, v in seen.items() if v and not called.get(f)]
    if missed:
        findings += " " + " ".join(f"There is also {f}." for f in missed)
        impression += " Also " + ", ".join(missed) + "."
    return findings, impression or "No acute cardiopulmonary abnormality."


def demo_like(n: int, *, seed: int) -> tuple[list[tuple[tuple[str, str], tuple[str, str]]], list[tuple[str, str]]]:
    """`n` cases as raw text: ([(assisted (findings, impression), standard (findings, impression))], drafts)."""
    rng = np.random.default_rng(seed)
    pairs, drafts = [], []
    for _ in range(n):
        present = random_findings(rng)
        details = {name: _details(name, rng) for name in present}
        drafted = {name: d for name, d in details.items() if rng.random() < 0.85}  # the model misses some
        draft = _report(drafted, rng)
        labels = {f: f in present for f in FINDINGS}
        drafts.append((draft.findings, draft.impression))
        pairs.append((_assisted(draft.findings, draft.impression, labels, rng), _standard(labels, rng)))
    return pairs, drafts


def shown(findings: str, impression: str, *, canonical: bool) -> str:
    report = normalize_report(findings=findings, impression=impression, canonical=canonical)
    return f"{report.findings}\n{report.impression}"


def demo_like_pairs(n: int, *, seed: int, canonical: bool) -> tuple[list[ReportPair], list[str]]:
    raw, drafts = demo_like(n, seed=seed)
    pairs = [ReportPair(assisted=shown(*a, canonical=canonical), standard=shown(*s, canonical=canonical))
             for a, s in raw]
    return pairs, [shown(*d, canonical=canonical) for d in drafts]
