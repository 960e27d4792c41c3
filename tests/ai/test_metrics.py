"""BLEU, ROUGE-L and finding-level scores, checked against sacrebleu, nltk and rouge-score."""
from __future__ import annotations

import math
import random

import pytest

try:
    import sacrebleu
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
    from rouge_score.rouge_scorer import RougeScorer
except ImportError as exc:  # a missing reference implementation fails the run, it is never skipped
    raise ImportError(
        "tests/ai/test_metrics.py compares with sacrebleu, nltk and rouge-score: pip install -e '.[dev]'"
    ) from exc

from ai.metrics import (
    bleu_tokenize,
    corpus_bleu,
    evaluate_reports,
    finding_scores,
    finding_scores_from_reports,
    rouge_l,
    rouge_l_corpus,
    sentence_bleu,
)

TOLERANCE = 1e-9  # absolute, on scores in [0, 1]

WORDS = (
    "the heart is normal in size no pleural effusion or pneumothorax small left right moderate large "
    "bilateral consolidation atelectasis opacity lungs are clear with of and a there basilar lobe lower "
    "upper mid zone cardiomegaly enlarged silhouette stable unchanged since prior study Heart No The"
).split()
PUNCTUATION = (".", ",", ";", ":", "(", ")", "-", "/", "?", "3.5", "1,200", "cm", "2-3", "&", "é", "naïve", "x-ray")


def random_report(rng: random.Random, *, min_words: int = 0, max_words: int = 40) -> str:
    out = []
    for _ in range(rng.randint(min_words, max_words)):
        r = rng.random()
        out.append(rng.choice(PUNCTUATION) if r < 0.15 else rng.choice(WORDS))
    joiner = rng.choice([" ", " ", " ", ""])  # sometimes punctuation glued to words
    return joiner.join(out) if joiner == "" else " ".join(out).replace(" .", rng.choice([" .", "."]))


def random_pairs(seed: int, n: int, **kwargs) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    hyps, refs = [], []
    for _ in range(n):
        ref = random_report(rng, **kwargs)
        if rng.random() < 0.6:  # an edited copy: realistic overlap
            words = ref.split()
            for _ in range(rng.randint(0, 6)):
                if words and rng.random() < 0.5:
                    words.pop(rng.randrange(len(words)))
                else:
                    words.insert(rng.randint(0, len(words)), rng.choice(WORDS))
            hyp = " ".join(words)
        else:
            hyp = random_report(rng, **kwargs)
        hyps.append(hyp)
        refs.append(ref)
    return hyps, refs


# --------------------------------------------------------------------------------------- BLEU


@pytest.mark.parametrize("smooth", ["exp", "none", "floor", "add-k"])
@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("seed", range(25))
def test_corpus_bleu_equals_sacrebleu(seed, smooth, lowercase):
    hyps, refs = random_pairs(seed, n=random.Random(seed).randint(1, 30))
    ours = corpus_bleu(hyps, refs, smooth=smooth, lowercase=lowercase).score
    theirs = sacrebleu.corpus_bleu(hyps, [refs], smooth_method=smooth, lowercase=lowercase).score / 100
    assert ours == pytest.approx(theirs, abs=TOLERANCE)


@pytest.mark.parametrize("smooth", ["exp", "none", "floor", "add-k"])
@pytest.mark.parametrize("seed", range(40))
def test_sentence_bleu_equals_sacrebleu(seed, smooth):
    hyps, refs = random_pairs(1000 + seed, n=1, max_words=12)
    ours = sentence_bleu(hyps[0], refs[0], smooth=smooth).score
    theirs = sacrebleu.sentence_bleu(hyps[0], [refs[0]], smooth_method=smooth, lowercase=True).score / 100
    assert ours == pytest.approx(theirs, abs=TOLERANCE)


@pytest.mark.parametrize("seed", range(10))
def test_corpus_bleu_with_two_references_equals_sacrebleu(seed):
    hyps, refs_a = random_pairs(2000 + seed, n=12)
    _, refs_b = random_pairs(3000 + seed, n=12)
    ours = corpus_bleu(hyps, list(zip(refs_a, refs_b))).score
    theirs = sacrebleu.corpus_bleu(hyps, [refs_a, refs_b], lowercase=True).score / 100
    assert ours == pytest.approx(theirs, abs=TOLERANCE)


@pytest.mark.parametrize("seed", range(25))
def test_unsmoothed_corpus_bleu_equals_nltk(seed):
    # nltk counts a hypothesis shorter than n as having one n-gram (its max(1, count)), sacrebleu
    # and we count none: compare on hypotheses of four tokens or more, where the two agree
    pairs = [(h, r) for h, r in zip(*random_pairs(4000 + seed, n=30, min_words=12)) if len(bleu_tokenize(h)) >= 4]
    assert len(pairs) >= 10
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    result = corpus_bleu(hyps, refs, smooth="none")
    assert all(m > 0 for m in result.matches)  # nltk without smoothing warns and returns ~0 otherwise
    theirs = nltk_corpus_bleu([[bleu_tokenize(r)] for r in refs], [bleu_tokenize(h) for h in hyps])
    assert result.score == pytest.approx(theirs, abs=TOLERANCE)


def test_bleu_tokenization_is_13a():
    text = 'Small left effusion (3.5 cm), "stable"; x-ray 2-3 &amp; 1,200.'
    assert bleu_tokenize(text, lowercase=False) == sacrebleu.BLEU(lowercase=False).tokenizer(text).split()


def test_identical_reports_score_one_and_disjoint_reports_zero():
    text = "The heart is normal in size. No pleural effusion or pneumothorax."
    assert corpus_bleu([text], [text]).score == pytest.approx(1.0)
    assert corpus_bleu(["alpha beta gamma delta"], ["one two three four"]).score == 0.0
    assert corpus_bleu([""], [text]).score == 0.0


def test_bleu_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])


# --------------------------------------------------------------------------------------- ROUGE-L

SCORER = RougeScorer(["rougeL"])


@pytest.mark.parametrize("seed", range(300))
def test_rouge_l_equals_rouge_score(seed):
    hyps, refs = random_pairs(5000 + seed, n=1)
    expected = SCORER.score(refs[0], hyps[0])["rougeL"].fmeasure  # rouge-score takes (target, prediction)
    assert rouge_l(hyps[0], refs[0]) == pytest.approx(expected, abs=TOLERANCE)


def test_rouge_l_corpus_is_the_mean_of_report_scores():
    hyps, refs = random_pairs(77, n=25)
    expected = sum(SCORER.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / 25
    assert rouge_l_corpus(hyps, refs) == pytest.approx(expected, abs=TOLERANCE)


def test_rouge_l_edge_cases():
    assert rouge_l("", "no effusion") == 0.0
    assert rouge_l("No effusion.", "no   EFFUSION") == 1.0
    assert rouge_l("a b c d", "a x c y") == pytest.approx(0.5)
    assert rouge_l_corpus([], []) == 0.0


# --------------------------------------------------------------------------------------- findings

F = ("pleural effusion", "pneumothorax")


def test_finding_scores_count_and_average():
    predicted = [{"pleural effusion": "present", "pneumothorax": "absent"},
                 {"pleural effusion": "present", "pneumothorax": "present"},
                 {"pleural effusion": "absent", "pneumothorax": "absent"},
                 {"pleural effusion": "absent", "pneumothorax": "absent"}]
    reference = [{"pleural effusion": "present", "pneumothorax": "absent"},
                 {"pleural effusion": "absent", "pneumothorax": "present"},
                 {"pleural effusion": "present", "pneumothorax": "present"},
                 {"pleural effusion": "absent", "pneumothorax": "absent"}]
    s = finding_scores(predicted, reference, F)
    eff, ptx = s.per_finding["pleural effusion"], s.per_finding["pneumothorax"]
    assert (eff.tp, eff.fp, eff.fn, eff.tn) == (1, 1, 1, 1)
    assert (ptx.tp, ptx.fp, ptx.fn, ptx.tn) == (1, 0, 1, 2)
    assert eff.precision == 0.5 and eff.recall == 0.5 and eff.f1 == 0.5 and eff.support == 2
    assert ptx.precision == 1.0 and ptx.recall == 0.5 and ptx.f1 == pytest.approx(2 / 3)
    assert s.micro_precision == pytest.approx(2 / 3) and s.micro_recall == pytest.approx(0.5)
    assert s.micro_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert s.macro_f1 == pytest.approx((0.5 + 2 / 3) / 2)
    assert s.macro_precision == pytest.approx(0.75) and s.macro_recall == pytest.approx(0.5)
    assert s.n_cases == 4 and s.uncertain == "positive"


@pytest.mark.parametrize(
    ("policy", "counts"),
    [("positive", (1, 0, 0, 0)), ("negative", (0, 0, 1, 0)), ("ignore", (0, 0, 0, 0))],
)
def test_uncertain_labels_follow_the_chosen_policy(policy, counts):
    s = finding_scores([{"pneumothorax": "uncertain"}], [{"pneumothorax": "present"}], ["pneumothorax"],
                       uncertain=policy)
    c = s.per_finding["pneumothorax"]
    assert (c.tp, c.fp, c.fn, c.tn) == counts


def test_a_finding_nobody_mentions_scores_zero_like_scikit_learn():
    s = finding_scores([{}], [{}], F)
    assert s.per_finding["pneumothorax"].f1 == 0.0 and s.per_finding["pneumothorax"].tn == 1
    assert s.micro_f1 == 0.0 and s.macro_f1 == 0.0


def test_finding_scores_from_reports_use_the_labeler():
    drafts = ["Small left pleural effusion. No pneumothorax.", "Possible right pneumothorax.", "Normal chest."]
    finals = ["Small left effusion. No pneumothorax.", "No pneumothorax.", "No pleural effusion."]
    s = finding_scores_from_reports(drafts, finals, F)
    assert s.per_finding["pleural effusion"].f1 == 1.0
    assert (s.per_finding["pneumothorax"].fp, s.per_finding["pneumothorax"].tp) == (1, 0)
    s = finding_scores_from_reports(drafts, finals, F, uncertain="negative")
    assert s.per_finding["pneumothorax"].fp == 0


def test_finding_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="uncertain must be"):
        finding_scores([{}], [{}], F, uncertain="maybe")
    with pytest.raises(ValueError, match="1 predicted label sets but 2"):
        finding_scores([{}], [{}, {}], F)
    with pytest.raises(ValueError, match="unknown label"):
        finding_scores([{"pneumothorax": "yes"}], [{}], F)


def test_evaluate_reports_gathers_the_three_metrics():
    hyps, refs = random_pairs(9, n=10, min_words=5)
    result = evaluate_reports(hyps, refs, F)
    assert result.n_cases == 10
    assert result.bleu4 == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score / 100, abs=TOLERANCE)
    assert result.rouge_l == pytest.approx(rouge_l_corpus(hyps, refs))
    assert 0.0 <= result.findings.micro_f1 <= 1.0 and not math.isnan(result.findings.macro_f1)
