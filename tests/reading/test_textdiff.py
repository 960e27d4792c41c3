"""How much of the AI draft survived: edit distance and kept share, checked by hand-counted examples."""
import pytest

from reading.textdiff import draft_survival


def test_unchanged_draft_is_fully_kept():
    s = draft_survival(draft="No acute findings.", report="No acute findings.")
    assert s.edit_distance == 0 and s.kept_share == 1


def test_reflowed_whitespace_is_not_an_edit():
    assert draft_survival(draft="No  acute\nfindings.", report="No acute findings.").edit_distance == 0


def test_one_word_replaced():
    # "left" → "right": delete 4 + insert 5 characters; Levenshtein: 'left'→'right' is 4 edits (l→r, e→i, f→g, t→ht)
    s = draft_survival(draft="Small left effusion.", report="Small right effusion.")
    assert s.edit_distance == pytest.approx(4 / 21)
    assert s.kept_share == pytest.approx((len("Small") + len("effusion.")) / len("Smallleft" "effusion."))


def test_rewritten_from_scratch_keeps_little():
    s = draft_survival(draft="Cardiomegaly.", report="Normal chest radiograph.")
    assert s.kept_share < 0.5 and s.edit_distance > 0.5
