"""Multiplicity adjustment of a family of p-values: Holm for key secondary endpoints, BH for exploratory ones.

Holm (1979, Scand J Stat 6:65) controls the family-wise error rate under any dependence;
Benjamini & Hochberg (1995, JRSS B 57:289) control the false discovery rate for independent or
positively dependent tests. Adjusted p-values equal R's `p.adjust(p, "holm")` / `p.adjust(p, "BH")`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

__all__ = ["METHODS", "MultiplicityResult", "adjust_pvalues"]

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
