"""Multiplicity adjustment of a family of p-values: Holm for key secondary endpoints, BH for exploratory ones.

Holm (1979, Scand J Stat 6:65) controls the family-wise error rate under any dependence;
Benjamini & Hochberg (1995, JRSS B 57:289) control the false discovery rate for independent or
positively dependent tests. Adjusted p-values equal R's `p.adjust(p, "holm")` / `p.adjust(p, "BH")`.

`adjust_family` adds the rules of a confirmatory analysis: a planned test that could not be estimated
counts as p = 1 and stays in its family (the family keeps its planned size: dropping it would make
the others easier to reject), and a family behind a gate (the key secondaries behind the primary:
serial gatekeeping, Maurer, Hothorn & Lehmacher 1995; Dmitrienko & Tamhane 2007) rejects nothing
unless the gate is open, which keeps the family-wise error of primary and secondaries together at α.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

__all__ = ["METHODS", "MultiplicityResult", "FamilyResult", "adjust_pvalues", "adjust_family"]

METHODS = {"holm": "holm", "bh": "fdr_bh"}


@dataclass(frozen=True)
class MultiplicityResult:
    method: str                  # "holm" or "bh"
    alpha: float
    names: tuple[str, ...]
    pvalues: tuple[float, ...]
    adjusted: tuple[float, ...]  # in the input order
    rejected: tuple[bool, ...]   # adjusted p ≤ alpha

    def to_dict(self) -> dict:
        return asdict(self)


def adjust_pvalues(pvalues, *, method: str = "holm", alpha: float = 0.05, names=None) -> MultiplicityResult:
    """Adjust `pvalues` (in their order) by Holm or Benjamini–Hochberg."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or p.size == 0:
        raise ValueError("pvalues must be a non-empty list")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    names = tuple(str(n) for n in names) if names is not None else tuple(str(i + 1) for i in range(p.size))
    if len(names) != p.size:
        raise ValueError("one name per p-value")
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=METHODS[method])
    return MultiplicityResult(method=method, alpha=alpha, names=names, pvalues=tuple(float(v) for v in p),
                              adjusted=tuple(float(v) for v in adjusted), rejected=tuple(bool(v) for v in reject))


@dataclass(frozen=True)
class FamilyResult:
    """One family of planned tests, adjusted together; `tested` is False when its gate stayed closed."""

    family: str
    method: str                  # "holm", "bh" or "none"
    alpha: float
    names: tuple[str, ...]
    pvalues: tuple[float, ...]   # as tested: 1 for a planned test that could not be estimated
    estimable: tuple[bool, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]   # all False when the gate is closed
    tested: bool
    gate: str = ""               # what opens the family, in words ("" = nothing: always tested)

    def to_dict(self) -> dict:
        return asdict(self)


def adjust_family(family: str, pvalues: Sequence[float | None], *, names: Sequence[str], method: str = "holm",
                alpha: float = 0.05, gate_open: bool = True, gate: str = "") -> FamilyResult:
    """Adjust a family of planned tests. None or NaN (a test that could not be estimated) enters as p = 1.

    With `gate_open` False nothing is rejected (the adjusted p-values are still shown, for information).
    """
    if method not in (*METHODS, "none"):
        raise ValueError(f"method must be one of {', '.join((*METHODS, 'none'))}")
    names = tuple(str(n) for n in names)
    if len(names) != len(pvalues):
        raise ValueError("one name per p-value")
    estimable = tuple(p is not None and math.isfinite(float(p)) for p in pvalues)
    p = tuple(float(v) if ok else 1.0 for v, ok in zip(pvalues, estimable))
    if not p:
        return FamilyResult(family, method, alpha, (), (), (), (), (), gate_open, gate)
    if method == "none":
        adjusted = p
        rejected = tuple(v <= alpha for v in p)
    else:
        res = adjust_pvalues(p, method=method, alpha=alpha, names=names)
        adjusted, rejected = res.adjusted, res.rejected
    if not gate_open:
        rejected = tuple(False for _ in p)
    return FamilyResult(family=family, method=method, alpha=alpha, names=names, pvalues=p, estimable=estimable,
                        adjusted=tuple(adjusted), rejected=tuple(bool(r) for r in rejected), tested=gate_open,
                        gate=gate)
