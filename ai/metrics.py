"""Automated report metrics: BLEU-4, ROUGE-L and finding-level precision/recall/F1; no Django.

These are the paper's retrospective metrics, computed by our own short code so that every number
on the evaluation page can be read and checked.  The tests compare them with the reference
implementations on PyPI:

- BLEU is sacrebleu's BLEU (Post, 2018): the same "13a" tokenisation (mteval-v13a, as used by WMT),
  clipped n-gram counts summed over the corpus, the closest reference length for the brevity
  penalty (the shorter one on a tie), and sacrebleu's smoothing methods ("exp" is NIST's,
  sacrebleu's default; "none" is plain BLEU and equals nltk's corpus_bleu without smoothing).
  We lower-case by default (sacrebleu does not): "FINDINGS" and "Findings" are the same word in a
  report.  Scores are fractions in [0, 1], not sacrebleu's 0–100.
- ROUGE-L is rouge-score's `RougeScorer(["rougeL"])` F-measure (no stemming): lower-case, every run
  of characters other than a–z and 0–9 is a separator, LCS precision and recall, F1.  Over a
  corpus it is the mean of the per-report scores.
- Finding-level scores come from labelling both texts with ai.labeler and counting, per finding,
  true/false positives and negatives.  "uncertain" counts as positive by default (CheXpert's
  "U-Ones" policy: a hedged finding was raised, and a reader would follow it up); "negative"
  ("U-Zeros") and "ignore" (the pair is left out of that finding's counts) can be chosen.  Micro
  averages pool the counts of all findings; macro averages are the mean of the per-finding
  scores.  A ratio with a zero denominator is 0, as scikit-learn's `zero_division=0`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from ai.labeler import Status, label_report

__all__ = [
    "BleuScore",
    "FindingCounts",
    "FindingScores",
    "ReportEvaluation",
    "bleu_tokenize",
    "corpus_bleu",
    "evaluate_reports",
    "finding_scores",
    "finding_scores_from_reports",
    "rouge_l",
    "rouge_l_corpus",
    "rouge_tokenize",
    "sentence_bleu",
]

Smoothing = Literal["exp", "none", "floor", "add-k"]
UncertainPolicy = Literal["positive", "negative", "ignore"]

# ---------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------

# mteval-v13a's tokenisation, as sacrebleu's "13a" tokenizer applies it.
_13A_RULES: Final = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period and comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # … unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a dash after a digit
)


def bleu_tokenize(text: str, *, lowercase: bool = True) -> list[str]:
    """Split a text into BLEU tokens (sacrebleu's "13a")."""
    line = text.rstrip()
    if lowercase:
        line = line.lower()
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


@dataclass(frozen=True)
class BleuScore:
    score: float  # in [0, 1]
    precisions: tuple[float, ...]  # modified n-gram precisions after smoothing, n = 1..max_order
    brevity_penalty: float
    hypothesis_length: int
    reference_length: int
    matches: tuple[int, ...]  # clipped n-gram matches by order
    totals: tuple[int, ...]  # hypothesis n-grams by order


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def _closest_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def _references(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in references]


def _bleu_statistics(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int, lowercase: bool
) -> tuple[list[int], list[int], int, int]:
    refs = _references(references)
    if len(hypotheses) != len(refs):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(refs)} references")
    matches, totals = [0] * max_order, [0] * max_order
    hyp_total = ref_total = 0
    for hypothesis, ref_texts in zip(hypotheses, refs):
        if not ref_texts:
            raise ValueError("every hypothesis needs at least one reference")
        hyp = bleu_tokenize(hypothesis, lowercase=lowercase)
        ref_tokens = [bleu_tokenize(r, lowercase=lowercase) for r in ref_texts]
        best_ref: Counter[tuple[str, ...]] = Counter()
        for tokens in ref_tokens:
            best_ref |= _ngrams(tokens, max_order)  # the most times any one reference has it
        for gram, count in _ngrams(hyp, max_order).items():
            n = len(gram) - 1
            totals[n] += count
            matches[n] += min(count, best_ref[gram])
        hyp_total += len(hyp)
        ref_total += _closest_length(len(hyp), [len(t) for t in ref_tokens])
    return matches, totals, hyp_total, ref_total


def _bleu(
    matches: list[int], totals: list[int], hyp_len: int, ref_len: int, *,
    smooth: Smoothing, smooth_value: float | None, effective_order: bool, max_order: int,
) -> BleuScore:
    if smooth not in ("exp", "none", "floor", "add-k"):
        raise ValueError(f"unknown smoothing {smooth!r}")
    if smooth_value is None:
        smooth_value = {"floor": 0.1, "add-k": 1.0}.get(smooth, 0.0)
    bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0)
    matched, total = [float(m) for m in matches], [float(t) for t in totals]
    precisions = [0.0] * max_order

    def result(score: float) -> BleuScore:
        return BleuScore(score, tuple(precisions), bp, hyp_len, ref_len, tuple(matches), tuple(totals))

    if not any(matches):
        return result(0.0)
    order = max_order
    halvings = 1.0
    for n in range(max_order):
        if smooth == "add-k" and n > 0:
            matched[n] += smooth_value
            total[n] += smooth_value
        if total[n] == 0:
            break  # no n-grams this long: the orders left keep precision 0 unless effective_order
        if effective_order:
            order = n + 1
        if matched[n] == 0:
            if smooth == "exp":
                halvings *= 2
                precisions[n] = 1.0 / (halvings * total[n])
            elif smooth == "floor":
                precisions[n] = smooth_value / total[n]
        else:
            precisions[n] = matched[n] / total[n]
    if any(p == 0.0 for p in precisions[:order]):
        return result(0.0)
    return result(bp * math.exp(sum(math.log(p) for p in precisions[:order]) / order))


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    max_order: int = 4,
    smooth: Smoothing = "exp",
    smooth_value: float | None = None,
    lowercase: bool = True,
) -> BleuScore:
    """Corpus BLEU-`max_order`: n-gram statistics summed over all reports, then one score.

    Each reference is one text or several (the closest in length sets the brevity penalty).
    Equals `sacrebleu.corpus_bleu(hyps, [refs], smooth_method=smooth, lowercase=lowercase).score / 100`.
    """
    if max_order < 1:
        raise ValueError("max_order must be at least 1")
    stats = _bleu_statistics(hypotheses, references, max_order, lowercase)
    return _bleu(*stats, smooth=smooth, smooth_value=smooth_value, effective_order=False, max_order=max_order)


def sentence_bleu(
    hypothesis: str,
    reference: str | Sequence[str],
    *,
    max_order: int = 4,
    smooth: Smoothing = "exp",
    smooth_value: float | None = None,
    lowercase: bool = True,
) -> BleuScore:
    """BLEU of one report, with "effective order" (orders longer than the hypothesis are left out),
    as `sacrebleu.sentence_bleu`.  BLEU is a corpus metric; a single report's score is noisy."""
    if max_order < 1:
        raise ValueError("max_order must be at least 1")
    stats = _bleu_statistics([hypothesis], [reference], max_order, lowercase)
    return _bleu(*stats, smooth=smooth, smooth_value=smooth_value, effective_order=True, max_order=max_order)


# ---------------------------------------------------------------------------------------------
# ROUGE-L
# ---------------------------------------------------------------------------------------------

_NON_ALPHANUMERIC: Final = re.compile(r"[^a-z0-9]+")


def rouge_tokenize(text: str) -> list[str]:
    """rouge-score's tokens: lower-case a–z/0–9 runs; everything else (accented letters too) separates."""
    return [t for t in _NON_ALPHANUMERIC.sub(" ", text.lower()).split() if t]


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure of one report: F1 of LCS precision (over the hypothesis) and recall (over
    the reference); 0 when either has no tokens."""
    hyp, ref = rouge_tokenize(hypothesis), rouge_tokenize(reference)
    if not hyp or not ref:
        return 0.0
    lcs = _lcs_length(hyp, ref)
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rouge_l_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure over report pairs (0 for an empty corpus)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return 0.0
    return math.fsum(rouge_l(h, r) for h, r in zip(hypotheses, references)) / len(hypotheses)


# ---------------------------------------------------------------------------------------------
# Finding-level precision, recall, F1
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingCounts:
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float

    @property
    def support(self) -> int:
        """Cases positive in the reference."""
        return self.tp + self.fn


@dataclass(frozen=True)
class FindingScores:
    per_finding: Mapping[str, FindingCounts]
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    uncertain: UncertainPolicy  # how "uncertain" labels were counted
    n_cases: int


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return precision, recall, _ratio(2 * tp, 2 * tp + fp + fn)


def finding_scores(
    predicted: Sequence[Mapping[str, Status]],
    reference: Sequence[Mapping[str, Status]],
    findings: Sequence[str],
    *,
    uncertain: UncertainPolicy = "positive",
) -> FindingScores:
    """Compare labels case by case (e.g. the labeler on AI drafts vs on final reports).

    A finding missing from a case's labels counts as "absent".
    """
    if uncertain not in ("positive", "negative", "ignore"):
        raise ValueError(f"uncertain must be 'positive', 'negative' or 'ignore', not {uncertain!r}")
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predicted label sets but {len(reference)} reference label sets")
    if not findings:
        raise ValueError("no findings to score")
    per: dict[str, FindingCounts] = {}
    sums = [0, 0, 0]
    for name in findings:
        tp = fp = fn = tn = 0
        for pred, ref in zip(predicted, reference):
            p, r = pred.get(name, "absent"), ref.get(name, "absent")
            for status in (p, r):
                if status not in ("present", "absent", "uncertain"):
                    raise ValueError(f"unknown label {status!r} for {name!r}")
            if uncertain == "ignore" and "uncertain" in (p, r):
                continue
            p_pos = p == "present" or (p == "uncertain" and uncertain == "positive")
            r_pos = r == "present" or (r == "uncertain" and uncertain == "positive")
            tp += p_pos and r_pos
            fp += p_pos and not r_pos
            fn += r_pos and not p_pos
            tn += not p_pos and not r_pos
        precision, recall, f1 = _prf(tp, fp, fn)
        per[name] = FindingCounts(tp, fp, fn, tn, precision, recall, f1)
        sums[0] += tp
        sums[1] += fp
        sums[2] += fn
    micro = _prf(*sums)
    k = len(per)
    return FindingScores(
        per_finding=MappingProxyType(per),
        micro_precision=micro[0],
        micro_recall=micro[1],
        micro_f1=micro[2],
        macro_precision=math.fsum(c.precision for c in per.values()) / k,
        macro_recall=math.fsum(c.recall for c in per.values()) / k,
        macro_f1=math.fsum(c.f1 for c in per.values()) / k,
        uncertain=uncertain,
        n_cases=len(predicted),
    )


def finding_scores_from_reports(
    hypotheses: Sequence[str],
    references: Sequence[str],
    findings: Sequence[str],
    *,
    uncertain: UncertainPolicy = "positive",
) -> FindingScores:
    """Label both report texts with ai.labeler, then finding_scores."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return finding_scores(
        [label_report(h, findings) for h in hypotheses],
        [label_report(r, findings) for r in references],
        findings,
        uncertain=uncertain,
    )


@dataclass(frozen=True)
class ReportEvaluation:
    n_cases: int
    bleu4: float  # corpus BLEU-4, sacrebleu's defaults but lower-cased, in [0, 1]
    rouge_l: float  # mean ROUGE-L F-measure, in [0, 1]
    findings: FindingScores


def evaluate_reports(
    hypotheses: Sequence[str],
    references: Sequence[str],
    findings: Sequence[str],
    *,
    uncertain: UncertainPolicy = "positive",
) -> ReportEvaluation:
    """The paper's retrospective table for one model: generated reports against final reports."""
    return ReportEvaluation(
        n_cases=len(hypotheses),
        bleu4=corpus_bleu(hypotheses, references).score,
        rouge_l=rouge_l_corpus(hypotheses, references),
        findings=finding_scores_from_reports(hypotheses, references, findings, uncertain=uncertain),
    )
