"""Concealed, reproducible allocation sequences: stratified permuted blocks of random size.

The unit being randomized (a reader, a case) is the caller's business; this module only maps
(secret seed, stratum, index within the stratum) to an arm, and can say why (block, position).

Why it is built this way:

- Audit reproducibility: the whole sequence follows from the seed, the stratum name and the
  scheme, through HMAC-SHA256 and integer arithmetic only. It does not use `random.Random`
  (whose seeding and shuffling may change between Python versions) nor anything that depends on
  the platform, so a statistician can recompute the sequence years later, in any language, from
  the algorithm described here and the revealed seed.
- Concealment: without the 32-byte secret seed the next allocation cannot be predicted from the
  past ones (HMAC is a pseudorandom function), so nobody can foresee an allocation before it is
  made, whatever they have seen.
- Random block sizes: with a fixed block size, someone who knows the size and has seen most of a
  block could deduce its last allocations. Choosing each block's size at random from several
  allowed sizes hides where a block ends, while still bounding the imbalance.

Algorithm (version `ALGORITHM`), for block number b of a stratum:
  byte stream  = HMAC-SHA256(seed, DOMAIN || len(stratum) as u32 || stratum (UTF-8) || b as u64
                 || counter as u64) for counter = 0, 1, 2, ..., concatenated;
  integer in [0, n) = next 8 bytes as a big-endian u64 x, rejected and redrawn while
                 x >= 2**64 - (2**64 mod n), then x mod n (unbiased);
  block size   = block_sizes[integer in [0, len(block_sizes))] (sizes in increasing order);
  block labels = each arm repeated ratio[arm] * (size / sum(ratio)) times, in scheme order,
                 then Fisher–Yates: for i = size-1 down to 1, swap labels[i] with labels[j],
                 j = integer in [0, i + 1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

ALGORITHM = "cxr-trial/permuted-blocks/hmac-sha256/v1"  # store with the trial: it names this exact recipe
DOMAIN = b"cxr-trial/randomization/v1\x00"  # separates these streams from any other use of the seed
SEED_BYTES = 32
MIN_SEED_BYTES = 16  # below 128 bits a seed could be guessed, and concealment would be lost

_U64 = 2**64


@dataclass(frozen=True)
class Scheme:
    """Arms, their allocation ratio, and the allowed block sizes as multiples of sum(ratio)."""

    arms: tuple[str, ...] = ("assisted", "standard")
    ratio: tuple[int, ...] = (1, 1)
    block_multiples: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self) -> None:
        # Lists are accepted and stored as tuples, so a scheme read from JSON is hashable and equal
        # to the same scheme written in code.
        arms = tuple(self.arms)
        ratio = tuple(self.ratio)
        multiples = tuple(self.block_multiples)
        if len(arms) < 2:
            raise ValueError(f"A scheme needs at least two arms; got {list(arms)}.")
        if not all(isinstance(arm, str) and arm.strip() for arm in arms):
            raise ValueError(f"Every arm needs a non-empty name; got {list(arms)}.")
        if len(set(arms)) != len(arms):
            raise ValueError(f"Arm names must be distinct; got {list(arms)}.")
        if len(ratio) != len(arms):
            raise ValueError(
                f"The ratio needs one number per arm: {len(arms)} arms {list(arms)} "
                f"but {len(ratio)} ratio numbers {list(ratio)}."
            )
        if not all(_is_positive_int(r) for r in ratio):
            raise ValueError(f"Ratio numbers must be positive whole numbers; got {list(ratio)}.")
        if not multiples:
            raise ValueError("At least one block size is needed.")
        if not all(_is_positive_int(m) for m in multiples):
            raise ValueError(f"Block multiples must be positive whole numbers; got {list(multiples)}.")
        if len(set(multiples)) != len(multiples):
            # A repeated size would silently be chosen more often than the others.
            raise ValueError(f"Block multiples must be distinct; got {list(multiples)}.")
        # Sorted, so that the order in which sizes were listed cannot change the sequence.
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "ratio", ratio)
        object.__setattr__(self, "block_multiples", tuple(sorted(multiples)))

    @classmethod
    def from_block_sizes(cls, arms: Iterable[str], ratio: Iterable[int], sizes: Iterable[int]) -> Scheme:
        """A scheme from explicit block sizes (e.g. 4 and 6 for 1:1); each must be a multiple of sum(ratio)."""
        ratio = tuple(ratio)
        sizes = tuple(sizes)
        if not all(_is_positive_int(r) for r in ratio):
            raise ValueError(f"Ratio numbers must be positive whole numbers; got {list(ratio)}.")
        unit = sum(ratio)
        bad = [s for s in sizes if not _is_positive_int(s) or s % unit]
        if bad:
            ratio_text = ":".join(str(r) for r in ratio)
            raise ValueError(
                f"Block sizes must be positive multiples of {unit} (the sum of the ratio {ratio_text}), "
                f"so that every block is balanced; {bad} {'is' if len(bad) == 1 else 'are'} not."
            )
        return cls(arms=tuple(arms), ratio=ratio, block_multiples=tuple(s // unit for s in sizes))

    @property
    def block_sizes(self) -> tuple[int, ...]:
        unit = sum(self.ratio)
        return tuple(m * unit for m in self.block_multiples)


@dataclass(frozen=True)
class Allocation:
    stratum: str
    index: int  # 0-based position within the stratum
    arm: str
    block: int  # 0-based block number within the stratum
    block_size: int
    position_in_block: int  # 0-based


def new_seed() -> bytes:
    """A fresh secret seed for a trial; keep it out of reach of everyone who enrols or reads."""
    return secrets.token_bytes(SEED_BYTES)


def allocate(*, seed: bytes, stratum: str, index: int, scheme: Scheme) -> Allocation:
    """The allocation at `index` (0-based) of `stratum`; the same inputs always give the same answer."""
    _check(seed=seed, stratum=stratum, scheme=scheme)
    if not _is_int(index) or index < 0:
        raise ValueError(f"The index must be a whole number >= 0; got {index!r}.")
    # Earlier blocks are regenerated only as far as their size (one HMAC each): cheap for
    # trials of thousands of units, and nothing has to be stored between calls.
    start = 0
    block = 0
    while True:
        stream = _Stream(seed, stratum, block)
        size = _block_size(stream, scheme)
        if index < start + size:
            labels = _block_labels(stream, scheme, size)
            position = index - start
            return Allocation(stratum, index, labels[position], block, size, position)
        start += size
        block += 1


def draw_below(*, seed: bytes, label: str, index: int, n: int) -> int:
    """A concealed, reproducible integer in [0, n) for (`label`, `index`): the same stream as block `index` of a
    stratum named `label` (use a label no stratum can have, e.g. one with a "/", which site codes never hold). The
    routing of a prospective trial breaks its ties with it."""
    _check(seed=seed, stratum=label, scheme=Scheme())
    if not _is_int(index) or index < 0 or not _is_int(n) or n < 1:
        raise ValueError(f"Need a whole index >= 0 and n >= 1; got {index!r}, {n!r}.")
    return _Stream(seed, label, index).below(n)


def sequence(*, seed: bytes, stratum: str, scheme: Scheme, length: int) -> list[Allocation]:
    """The first `length` allocations of `stratum`."""
    _check(seed=seed, stratum=stratum, scheme=scheme)
    if not _is_int(length) or length < 0:
        raise ValueError(f"The length must be a whole number >= 0; got {length!r}.")
    out: list[Allocation] = []
    block = 0
    while len(out) < length:
        stream = _Stream(seed, stratum, block)
        size = _block_size(stream, scheme)
        for position, arm in enumerate(_block_labels(stream, scheme, size)):
            if len(out) == length:
                break
            out.append(Allocation(stratum, len(out), arm, block, size, position))
        block += 1
    return out


def imbalance_simulation(*, scheme: Scheme, n_units: int, n_strata: int, runs: int, seed: bytes) -> dict:
    """Pre-trial simulation of the overall imbalance when units fall at random into equally likely strata.

    Imbalance of a run = max over arms of |units in the arm - n_units * ratio / sum(ratio)|.
    Returns {"runs", "n_units", "n_strata", "mean", "median", "p95", "max", "distribution"}, where
    distribution maps each imbalance seen to the number of runs that had it. Deterministic given `seed`.
    """
    for name, value, low in (("n_units", n_units, 0), ("n_strata", n_strata, 1), ("runs", runs, 1)):
        if not _is_int(value) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}; got {value!r}.")
    _check(seed=seed, stratum="", scheme=scheme)
    total = sum(scheme.ratio)
    imbalances: list[float] = []
    for run in range(runs):
        # Each run gets its own derived seed, and its own stream for the strata of the units.
        run_seed = hmac.new(seed, DOMAIN + b"simulation" + run.to_bytes(8, "big"), hashlib.sha256).digest()
        strata_stream = _Stream(run_seed, "simulation/strata", 0)
        per_stratum = Counter(strata_stream.below(n_strata) for _ in range(n_units))
        arms = Counter()
        for stratum, count in per_stratum.items():
            arms.update(a.arm for a in sequence(seed=run_seed, stratum=str(stratum), scheme=scheme, length=count))
        imbalance = max(abs(arms[arm] - n_units * r / total) for arm, r in zip(scheme.arms, scheme.ratio))
        imbalances.append(int(imbalance) if float(imbalance).is_integer() else imbalance)
    ordered = sorted(imbalances)
    return {
        "runs": runs,
        "n_units": n_units,
        "n_strata": n_strata,
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[min(runs - 1, -(-95 * runs // 100) - 1)],  # nearest-rank 95th percentile
        "max": ordered[-1],
        "distribution": dict(sorted(Counter(ordered).items())),
    }


class _Stream:
    """The deterministic byte stream of one block: HMAC-SHA256 outputs for counter 0, 1, 2, ..."""

    def __init__(self, seed: bytes, stratum: str, block: int) -> None:
        name = stratum.encode("utf-8")
        # Length-prefixed, so that no two (stratum, block) pairs can produce the same message.
        self._prefix = DOMAIN + len(name).to_bytes(4, "big") + name + block.to_bytes(8, "big")
        self._seed = bytes(seed)
        self._counter = 0
        self._buffer = b""

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            message = self._prefix + self._counter.to_bytes(8, "big")
            self._buffer += hmac.new(self._seed, message, hashlib.sha256).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def below(self, n: int) -> int:
        """A uniform integer in [0, n): rejection sampling, so that no value is favoured by `mod`."""
        limit = _U64 - _U64 % n
        while True:
            x = int.from_bytes(self._take(8), "big")
            if x < limit:
                return x % n


def _block_size(stream: _Stream, scheme: Scheme) -> int:
    sizes = scheme.block_sizes
    return sizes[stream.below(len(sizes))]


def _block_labels(stream: _Stream, scheme: Scheme, size: int) -> list[str]:
    multiple = size // sum(scheme.ratio)
    labels = [arm for arm, r in zip(scheme.arms, scheme.ratio) for _ in range(r * multiple)]
    for i in range(size - 1, 0, -1):  # Fisher–Yates: every ordering equally likely
        j = stream.below(i + 1)
        labels[i], labels[j] = labels[j], labels[i]
    return labels


def _check(*, seed: bytes, stratum: str, scheme: Scheme) -> None:
    if not isinstance(seed, (bytes, bytearray)):
        raise TypeError(f"The seed must be bytes (see new_seed()); got {type(seed).__name__}.")
    if len(seed) < MIN_SEED_BYTES:
        raise ValueError(
            f"The seed is {len(seed)} bytes; at least {MIN_SEED_BYTES} are needed to keep the sequence "
            f"concealed (new_seed() makes {SEED_BYTES})."
        )
    if not isinstance(stratum, str):
        raise TypeError(f"The stratum must be a string; got {type(stratum).__name__}.")
    if not isinstance(scheme, Scheme):
        raise TypeError(f"The scheme must be a Scheme; got {type(scheme).__name__}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: object) -> bool:
    return _is_int(value) and value > 0
