"""How much of the AI draft survived in the final report (no Django): a measure of automation bias."""
from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein  # MIT; C++ edit distance, ~100x faster than pure Python


@dataclass(frozen=True)
class DraftSurvival:
    edit_distance: float  # normalized Levenshtein distance, 0 = the draft unchanged, 1 = nothing in common
    kept_share: float     # share of the draft's characters in words kept unchanged, in order, in the report


def _normalise(text: str) -> str:
    # Whitespace and line breaks are layout, not content: do not count reflowed text as an edit.
    return " ".join(text.split())


def draft_survival(*, draft: str, report: str) -> DraftSurvival:
    a, b = _normalise(draft), _normalise(report)
    if not a:
        return DraftSurvival(edit_distance=0.0 if not b else 1.0, kept_share=0.0)
    # Kept text is counted by whole words: letters that happen to line up inside rewritten words
    # ("Cardiomegaly" vs "radiograph") are not a kept draft.
    words_a, words_b = a.split(" "), b.split(" ")
    kept = sum(len(w) for op in Levenshtein.opcodes(words_a, words_b) if op.tag == "equal"
               for w in words_a[op.src_start:op.src_end])
    return DraftSurvival(edit_distance=Levenshtein.normalized_distance(a, b),
                         kept_share=kept / sum(len(w) for w in words_a))
