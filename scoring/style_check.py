"""The blinding-integrity check (no Django): can the arm of a report be told from its text alone?

Experts are blinded to the arm, but an assisted report is an edited AI draft, and edits leave the draft's
style: its length, its stock phrases, its structure. This check measures how much of the arm the style gives
away, on the trial's own report pairs (the two reports of a case, as the experts see them, or would see them
under another presentation), before any expert scores:

1. Each pair is put in a random order (first, second), as sides are randomized for experts; the question is
   whether the first report is the assisted one.
2. A few transparent features are computed per report, and each pair is described by first minus second:
   - words: the number of words (log);
   - statements: the number of statements (lines);
   - stock phrases: the share of the report's statements that are stock phrases of the AI draft (statements
     that recur across the trial's drafts; without drafts, statements that recur across the training half's
     reports, whatever their arm);
   - wording not in the other: the share of the report's word pairs (bigrams) absent from the other report;
   - words per statement.
   The differences are antisymmetric (swapping the reports flips their sign), so the model has no intercept.
3. The pairs are split at random in two halves. A logistic regression with a ridge penalty (λ = 1 on
   features scaled to unit root mean square on the training half; Newton's method, numpy only; the penalty
   keeps the fit finite when one feature separates the arms perfectly, which is what this check looks for)
   is trained on one half and tested on the other: its accuracy (the share of test pairs whose assisted
   report it names) with a Wilson score interval.
4. Simple one-feature rules on the same test half, each with its direction chosen on the training half:
   "the longer report", "the one with more statements", "the one with more stock phrases", "the one with
   more wording not in the other", and "the one containing (or lacking) sentence S", S the single recurring
   statement that best tells the arms apart on the training half. A tie (equal lengths; S in both or in
   neither) counts one half: a coin would settle it.

An accuracy near 0.5 means the style gives nothing away to these features; near 1 means a reader of the two
texts can name the arm. It is about text style, not about outcomes: nothing here compares report quality.
The result holds aggregates only (counts, accuracies, weights, one generic sentence), never which report of
which pair is which, so showing it does not unblind any case.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.special import expit

FEATURES = ("words (log)", "statements", "stock phrases of the draft", "wording not in the other report",
            "words per statement")
MIN_PAIRS = 20          # fewer pairs than this: too few to say anything (10 pairs in the test half)
PENALTY = 1.0           # ridge λ, on features scaled to unit RMS
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class ReportPair:
    """The two reports of one unit as its experts would see them: one statement per line (scoring.normalize)."""

    assisted: str
    standard: str


@dataclass(frozen=True)
class Accuracy:
    """How often a rule, or the classifier, names the assisted report of a test pair; ties count one half."""

    name: str
    correct: float
    n: int
    confidence_level: float

    @property
    def estimate(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def confidence_interval(self) -> tuple[float, float]:
        """Wilson score interval (the continuity is not corrected; a half-count tie enters p̂ as it is)."""
        return wilson_interval(self.correct, self.n, self.confidence_level)


@dataclass(frozen=True)
class StyleCheckResult:
    pairs: int
    train: int
    test: int
    min_pairs: int
    classifier: Accuracy | None               # None when there are fewer than min_pairs pairs
    baselines: tuple[Accuracy, ...]
    weights: tuple[tuple[str, float], ...]    # standardized coefficients: > 0, a larger first-minus-second
                                              # value makes "the first is assisted" more likely
    stock_phrases: int                        # how many stock phrases the feature used
    stock_source: str                         # "drafts" or "reports" (recurring statements of the training half)

    @property
    def enough(self) -> bool:
        return self.classifier is not None


def wilson_interval(successes: float, n: int, confidence_level: float = 0.95) -> tuple[float, float]:
    if n <= 0:
        return (float("nan"), float("nan"))
    z = NormalDist().inv_cdf(0.5 + confidence_level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# ------------------------------------------------------------------------------------------ text features


def statement_key(statement: str) -> str:
    """A statement as a stock phrase is compared: lower case, words only."""
    return " ".join(_WORD.findall(statement.lower()))


def _statements(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def stock_phrases(drafts: Iterable[str], *, min_count: int = 2, min_share: float = 0.02) -> frozenset[str]:
    """The statements (as statement_key) found in at least `min_count` drafts and `min_share` of them."""
    texts = list(drafts)
    counts = Counter(key for text in texts for key in {statement_key(s) for s in _statements(text)} if key)
    floor = max(min_count, math.ceil(min_share * len(texts)))
    return frozenset(key for key, n in counts.items() if n >= floor)


@dataclass(frozen=True)
class _Text:
    words: int
    statements: tuple[str, ...]   # statement keys
    bigrams: frozenset[tuple[str, str]]


def _text(text: str) -> _Text:
    keys = tuple(k for k in (statement_key(s) for s in _statements(text)) if k)
    words = [w for k in keys for w in k.split(" ")]
    return _Text(len(words), keys, frozenset(zip(words, words[1:], strict=False)))


def _features(a: _Text, b: _Text, stock: frozenset[str]) -> list[float]:
    def per_report(t: _Text, other: _Text) -> list[float]:
        n = len(t.statements)
        return [math.log1p(t.words), float(n), (sum(k in stock for k in t.statements) / n) if n else 0.0,
                (len(t.bigrams - other.bigrams) / len(t.bigrams)) if t.bigrams else 0.0,
                (t.words / n) if n else 0.0]

    return [x - y for x, y in zip(per_report(a, b), per_report(b, a), strict=True)]


# ------------------------------------------------------------------------------------------ the model


def _fit(x: np.ndarray, y: np.ndarray, penalty: float = PENALTY) -> np.ndarray:
    """Ridge-penalized logistic regression without intercept, by Newton's method."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = expit(x @ beta)
        gradient = x.T @ (y - p) - penalty * beta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def _score(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Correct predictions, a tie (prediction 0) counting one half; predicted > 0 means "the first is assisted"."""
    return float(np.sum(np.where(predicted == 0, 0.5, (predicted > 0) == (truth == 1))))


def _rule(name_up: str, name_down: str, train_d: np.ndarray, train_y: np.ndarray, test_d: np.ndarray,
          test_y: np.ndarray, level: float) -> Accuracy:
    """A one-feature rule: "the report with the larger value is assisted", or the smaller one (chosen on the
    training half)."""
    up = _score(np.sign(train_d), train_y) >= len(train_y) / 2
    return Accuracy(name_up if up else name_down, _score(np.sign(test_d) * (1 if up else -1), test_y), len(test_y),
                    level)


def _sentence_rule(train: list[tuple[_Text, _Text]], train_y: np.ndarray, test: list[tuple[_Text, _Text]],
                   test_y: np.ndarray, shown: dict[str, str], level: float) -> Accuracy | None:
    """The single recurring statement whose presence best names the assisted report on the training half."""
    reports = [t for pair in train for t in pair]
    floor = max(3, math.ceil(0.05 * len(reports)))
    counts = Counter(k for t in reports for k in set(t.statements))
    candidates = sorted(k for k, n in counts.items() if n >= floor)
    if not candidates:
        return None

    def signs(pairs, key):
        return np.array([(key in a.statements) - (key in b.statements) for a, b in pairs], dtype=float)

    best = max(((abs(_score(signs(train, k), train_y) - len(train_y) / 2), k) for k in candidates),
               key=lambda item: (item[0], item[1]))[1]
    up = _score(signs(train, best), train_y) >= len(train_y) / 2
    words = shown.get(best, best)
    name = f"the one containing “{words}”" if up else f"the one lacking “{words}”"
    return Accuracy(name, _score(signs(test, best) * (1 if up else -1), test_y), len(test_y), level)


def style_check(pairs: Sequence[ReportPair], *, drafts: Iterable[str] = (), seed: int = 0,
                confidence_level: float = 0.95, min_pairs: int = MIN_PAIRS) -> StyleCheckResult:
    """Train on a random half of `pairs`, test on the other (see the module's docstring). `drafts`: the AI
    drafts' texts in the same presentation, for the stock phrases; `seed` fixes the order and the split."""
    n = len(pairs)
    draft_stock = stock_phrases(drafts)
    if n < min_pairs:
        return StyleCheckResult(n, 0, 0, min_pairs, None, (), (), len(draft_stock), "drafts" if draft_stock else "")
    rng = np.random.default_rng(seed)
    first_is_assisted = rng.random(n) < 0.5
    texts = []
    shown: dict[str, str] = {}
    for pair, assisted_first in zip(pairs, first_is_assisted, strict=True):
        a, s = _text(pair.assisted), _text(pair.standard)
        texts.append((a, s) if assisted_first else (s, a))
        for line in _statements(pair.assisted) + _statements(pair.standard):
            shown.setdefault(statement_key(line), line)
    y = first_is_assisted.astype(float)
    order = rng.permutation(n)
    train_idx, test_idx = np.sort(order[: n // 2]), np.sort(order[n // 2:])
    train = [texts[i] for i in train_idx]
    test = [texts[i] for i in test_idx]
    stock, source = draft_stock, "drafts"
    if not stock:  # no drafts: the statements that recur in the training half, whatever their arm
        stock, source = stock_phrases([" \n".join(t.statements) for pair in train for t in pair],
                                      min_count=3, min_share=0.05), "reports"
    x = np.array([_features(a, b, stock) for a, b in texts])
    scale = np.sqrt(np.mean(x[train_idx] ** 2, axis=0))
    scale[scale == 0] = 1.0
    z = x / scale
    beta = _fit(z[train_idx], y[train_idx])
    eta = z[test_idx] @ beta
    predicted = np.where(np.abs(eta) < 1e-12, 0.0, eta)
    level = confidence_level
    classifier = Accuracy("logistic regression on the five features", _score(predicted, y[test_idx]),
                          len(test_idx), level)
    names = [("the longer one", "the shorter one"),
             ("the one with more statements", "the one with fewer statements"),
             ("the one with more stock phrases of the draft", "the one with fewer stock phrases of the draft"),
             ("the one with more wording not in the other", "the one with less wording not in the other")]
    baselines = [_rule(up, down, x[train_idx, j], y[train_idx], x[test_idx, j], y[test_idx], level)
                 for j, (up, down) in enumerate(names)]
    sentence = _sentence_rule(train, y[train_idx], test, y[test_idx], shown, level)
    if sentence is not None:
        baselines.append(sentence)
    return StyleCheckResult(n, len(train_idx), len(test_idx), min_pairs, classifier, tuple(baselines),
                            tuple(zip(FEATURES, (float(b) for b in beta), strict=True)), len(stock), source)
