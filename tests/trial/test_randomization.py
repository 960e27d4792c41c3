"""The allocation engine: reproducible, concealed, balanced at block ends, with random block sizes."""

import hashlib
import hmac
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from trial.randomization import (
    DOMAIN,
    Allocation,
    Scheme,
    allocate,
    imbalance_simulation,
    new_seed,
    sequence,
)

REPO = Path(__file__).resolve().parents[2]
SEED = bytes(range(32))  # fixed, so every statistical check below is deterministic and cannot flake
OTHER_SEED = bytes(range(1, 33))
SCHEME = Scheme()


def _seeds(n: int) -> list[bytes]:
    return [hashlib.sha256(f"seed {i}".encode()).digest() for i in range(n)]


def _arms(allocations: list[Allocation]) -> list[str]:
    return [a.arm for a in allocations]


# Reproducibility and concealment


def test_same_seed_and_stratum_give_the_same_sequence():
    first = sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=200)
    again = sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=200)
    assert first == again


def test_sequence_is_the_same_in_a_fresh_process_with_another_hash_seed():
    code = (
        "from trial.randomization import Scheme, sequence\n"
        f"print(''.join(a.arm[0] for a in sequence(seed={SEED!r}, stratum='site-1', scheme=Scheme(), length=100)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    here = "".join(a.arm[0] for a in sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=100))
    assert out.stdout.strip() == here


def test_different_seeds_give_different_sequences():
    a = _arms(sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=100))
    b = _arms(sequence(seed=OTHER_SEED, stratum="site-1", scheme=SCHEME, length=100))
    assert a != b


def test_different_strata_give_different_sequences():
    a = _arms(sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=100))
    b = _arms(sequence(seed=SEED, stratum="site-2", scheme=SCHEME, length=100))
    assert a != b


def test_golden_vector_pins_the_sequence_across_versions():
    # Computed once by this implementation (algorithm v1). If this test fails, the sequence of every
    # running trial would change: never update these values, add a new algorithm version instead.
    got = [(a.arm, a.block, a.block_size, a.position_in_block)
           for a in sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=12)]
    assert got == [
        ("standard", 0, 4, 0), ("assisted", 0, 4, 1), ("assisted", 0, 4, 2), ("standard", 0, 4, 3),
        ("assisted", 1, 4, 0), ("assisted", 1, 4, 1), ("standard", 1, 4, 2), ("standard", 1, 4, 3),
        ("assisted", 2, 2, 0), ("standard", 2, 2, 1),
        ("assisted", 3, 6, 0), ("standard", 3, 6, 1),
    ]


def test_documented_recipe_reproduces_the_first_block():
    # An auditor re-implements the module docstring from scratch; it must match the code.
    def stream():
        name = b"site-1"
        prefix = DOMAIN + len(name).to_bytes(4, "big") + name + (0).to_bytes(8, "big")
        data = b"".join(hmac.new(SEED, prefix + c.to_bytes(8, "big"), hashlib.sha256).digest() for c in range(4))
        for k in range(0, len(data), 8):
            yield int.from_bytes(data[k:k + 8], "big")

    draws = stream()

    def below(n):
        while (x := next(draws)) >= 2**64 - 2**64 % n:
            pass
        return x % n

    size = (2, 4, 6)[below(3)]
    labels = ["assisted"] * (size // 2) + ["standard"] * (size // 2)
    for i in range(size - 1, 0, -1):
        j = below(i + 1)
        labels[i], labels[j] = labels[j], labels[i]
    assert labels == _arms(sequence(seed=SEED, stratum="site-1", scheme=SCHEME, length=size))
    assert allocate(seed=SEED, stratum="site-1", index=size, scheme=SCHEME).block == 1


def test_new_seed_is_32_random_bytes():
    a, b = new_seed(), new_seed()
    assert isinstance(a, bytes) and len(a) == 32
    assert a != b


# Balance and block sizes


@pytest.mark.parametrize("scheme", [Scheme(), Scheme(ratio=(2, 1)), Scheme(arms=("a", "b", "c"), ratio=(1, 2, 1))])
def test_counts_follow_the_ratio_exactly_at_every_block_end(scheme):
    allocations = sequence(seed=SEED, stratum="s", scheme=scheme, length=600)
    counts = Counter()
    for a in allocations:
        counts[a.arm] += 1
        if a.position_in_block == a.block_size - 1:
            multiple = sum(counts.values()) // sum(scheme.ratio)
            assert [counts[arm] for arm in scheme.arms] == [r * multiple for r in scheme.ratio]


def test_imbalance_within_a_block_never_exceeds_half_the_block_size():
    counts = Counter()
    for a in sequence(seed=SEED, stratum="s", scheme=SCHEME, length=2000):
        if a.position_in_block == 0:
            counts.clear()
        counts[a.arm] += 1
        assert abs(counts["assisted"] - counts["standard"]) <= a.block_size // 2


def test_block_sizes_come_only_from_the_allowed_set_and_all_occur_about_equally():
    allocations = sequence(seed=SEED, stratum="s", scheme=SCHEME, length=12000)
    sizes = Counter(a.block_size for a in allocations if a.position_in_block == 0)
    assert set(sizes) == {2, 4, 6}
    n = sum(sizes.values())
    chi_square = sum((count - n / 3) ** 2 / (n / 3) for count in sizes.values())
    assert chi_square < 13.8  # chi-square, 2 degrees of freedom, p = 0.001


def test_blocks_are_numbered_and_positions_run_through_each_block():
    allocations = sequence(seed=SEED, stratum="s", scheme=SCHEME, length=300)
    assert [a.index for a in allocations] == list(range(300))
    for prev, cur in zip(allocations, allocations[1:]):
        if prev.position_in_block == prev.block_size - 1:
            assert (cur.block, cur.position_in_block) == (prev.block + 1, 0)
        else:
            assert (cur.block, cur.block_size, cur.position_in_block) == (
                prev.block, prev.block_size, prev.position_in_block + 1)


def test_two_to_one_ratio_uses_blocks_of_three_six_and_nine():
    scheme = Scheme(ratio=(2, 1))
    allocations = sequence(seed=SEED, stratum="s", scheme=scheme, length=3000)
    assert {a.block_size for a in allocations} == {3, 6, 9}
    counts = Counter(_arms(allocations))
    assert abs(counts["assisted"] - 2 * counts["standard"]) <= 9


def test_allocate_equals_the_sequence_at_every_index():
    allocations = sequence(seed=SEED, stratum="site-3", scheme=SCHEME, length=150)
    assert [allocate(seed=SEED, stratum="site-3", index=i, scheme=SCHEME) for i in range(150)] == allocations


def test_first_allocation_is_assisted_about_half_the_time_over_many_seeds():
    firsts = Counter(allocate(seed=s, stratum="site-1", index=0, scheme=SCHEME).arm for s in _seeds(2000))
    assert 900 <= firsts["assisted"] <= 1100  # mean 1000, sd 22: about 4.5 sd either side


def test_every_position_in_a_block_is_assisted_about_half_the_time():
    # A predictable pattern within blocks (e.g. always "assisted" first) would break concealment.
    by_position = Counter()
    totals = Counter()
    for s in _seeds(300):
        for a in sequence(seed=s, stratum="s", scheme=Scheme(block_multiples=(2,)), length=40):
            totals[a.position_in_block] += 1
            by_position[a.position_in_block] += a.arm == "assisted"
    for position, n in totals.items():
        share = by_position[position] / n
        assert abs(share - 0.5) < 4 * math.sqrt(0.25 / n), position


# Refusals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arms": ("assisted",), "ratio": (1,)}, "at least two arms"),
        ({"arms": ("assisted", "assisted")}, "distinct"),
        ({"arms": ("assisted", " ")}, "non-empty name"),
        ({"ratio": (1, 1, 1)}, "one number per arm"),
        ({"ratio": (1, 0)}, "positive whole numbers"),
        ({"ratio": (1, 1.5)}, "positive whole numbers"),
        ({"block_multiples": ()}, "At least one block size"),
        ({"block_multiples": (1, -2)}, "positive whole numbers"),
        ({"block_multiples": (True,)}, "positive whole numbers"),
        ({"block_multiples": (2, 2)}, "distinct"),
    ],
)
def test_invalid_scheme_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Scheme(**kwargs)


def test_block_size_that_is_not_a_multiple_of_the_ratio_sum_is_rejected():
    with pytest.raises(ValueError, match=r"multiples of 3 \(the sum of the ratio 2:1\).*\[4\] is not"):
        Scheme.from_block_sizes(("assisted", "standard"), (2, 1), (3, 4, 6))


def test_scheme_from_block_sizes_matches_the_scheme_from_multiples():
    assert Scheme.from_block_sizes(["assisted", "standard"], [1, 1], [6, 2]) == Scheme(block_multiples=(1, 3))
    assert Scheme(block_multiples=[3, 1, 2]).block_sizes == (2, 4, 6)


def test_short_or_missing_seed_is_rejected():
    with pytest.raises(ValueError, match="at least 16 are needed"):
        allocate(seed=b"secret", stratum="s", index=0, scheme=SCHEME)
    with pytest.raises(TypeError, match="must be bytes"):
        allocate(seed="x" * 32, stratum="s", index=0, scheme=SCHEME)


def test_negative_index_or_length_is_rejected():
    with pytest.raises(ValueError, match="index must be a whole number >= 0"):
        allocate(seed=SEED, stratum="s", index=-1, scheme=SCHEME)
    with pytest.raises(ValueError, match="length must be a whole number >= 0"):
        sequence(seed=SEED, stratum="s", scheme=SCHEME, length=-1)
    assert sequence(seed=SEED, stratum="s", scheme=SCHEME, length=0) == []


# Pre-trial simulation


def test_imbalance_simulation_is_deterministic_and_bounded():
    kwargs = {"scheme": SCHEME, "n_units": 120, "n_strata": 4, "runs": 100, "seed": SEED}
    result = imbalance_simulation(**kwargs)
    assert result == imbalance_simulation(**kwargs)
    assert sum(result["distribution"].values()) == 100
    # Each stratum is off by at most half its largest block (3), so the total by at most 4 * 3.
    assert 0 <= result["median"] <= result["p95"] <= result["max"] <= 12
