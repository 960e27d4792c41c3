"""Safety monitoring of missed critical findings (issue 14 item 8), against Newcombe's published intervals."""
from __future__ import annotations

import pytest

from stats.methods.safety import missed_critical_findings


def _rows(spec):
    """spec: (arm, reader, finding, reference, call, times)."""
    out = {"arm": [], "reader": [], "finding": [], "reference": [], "call": []}
    for arm, reader, finding, reference, call, times in spec:
        for _ in range(times):
            for key, value in zip(out, (arm, reader, finding, reference, call)):
                out[key].append(value)
    return out


def test_misses_per_arm_and_the_difference_equal_newcombes_published_interval():
    # Newcombe (1998), Stat Med 17:873, Table II example (a): 56/70 against 48/80 → method 10: 0.0524 to 0.3339.
    rows = _rows([
        ("A", "R1", "pneumothorax", 1, 0, 56), ("A", "R1", "pneumothorax", 1, 1, 14),
        ("S", "R2", "pneumothorax", 1, 0, 48), ("S", "R2", "pneumothorax", 1, 1, 32),
    ])
    result = missed_critical_findings(**rows, critical=["pneumothorax"], treatment="A", control="S")
    assert result.by_arm["A"].missed == 56 and result.by_arm["A"].present == 70
    assert result.difference == pytest.approx(56 / 70 - 48 / 80)
    assert result.difference_ci == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert result.signal  # more misses with the AI, beyond chance
    # example (b): 9/10 against 3/10 → 0.1705 to 0.8090
    rows = _rows([("A", "R1", "f", 1, 0, 9), ("A", "R1", "f", 1, 1, 1),
                  ("S", "R2", "f", 1, 0, 3), ("S", "R2", "f", 1, 1, 7)])
    assert missed_critical_findings(**rows, critical=["f"], treatment="A", control="S").difference_ci == \
        pytest.approx((0.1705, 0.8090), abs=5e-5)


def test_only_critical_findings_present_by_the_reference_count():
    rows = _rows([
        ("A", "R1", "pneumothorax", 1, 0, 2),   # missed
        ("A", "R1", "pneumothorax", 0, 0, 50),  # absent: not a miss
        ("A", "R1", "atelectasis", 1, 0, 30),   # not critical
        ("S", "R2", "pneumothorax", 1, 1, 4),
        ("S", "R3", "pneumothorax", 1, 0, 1),
    ])
    result = missed_critical_findings(**rows, critical=["pneumothorax"], treatment="A", control="S", margin=0.1)
    assert (result.by_arm["A"].missed, result.by_arm["A"].present) == (2, 2)
    assert (result.by_arm["S"].missed, result.by_arm["S"].present) == (1, 5)
    assert result.by_reader["R3"].missed == 1 and result.by_reader["R2"].missed == 0
    assert result.margin == 0.1 and result.as_dict()["by_finding"]["pneumothorax"]["A"]["missed"] == 2


def test_no_critical_finding_present_in_an_arm_gives_no_signal_and_no_error():
    rows = _rows([("A", "R1", "f", 0, 0, 5), ("S", "R2", "f", 1, 0, 5)])
    result = missed_critical_findings(**rows, critical=["f"], treatment="A", control="S")
    assert result.by_arm["A"].present == 0 and not result.signal and result.difference != result.difference


@pytest.mark.parametrize("change, message", [
    ({"critical": []}, "critical"),
    ({"control": "A"}, "differ"),
    ({"arm": ["X"]}, "Unknown arm"),
    ({"call": []}, "same length"),
])
def test_bad_input_is_refused(change, message):
    args = {"arm": ["A"], "reader": ["R1"], "finding": ["f"], "reference": [1], "call": [0], "critical": ["f"],
            "treatment": "A", "control": "S", **change}
    with pytest.raises(ValueError, match=message):
        missed_critical_findings(**args)
