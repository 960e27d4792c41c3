"""The six findings a phantom can show, and how each one's side, size, zone and kind are drawn at random."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from trial.findings import DEFAULT_FINDINGS

# The phantoms draw the findings a trial asks about by default (the paper's six).
FINDINGS: Final = DEFAULT_FINDINGS

Side = Literal["right", "left", "bilateral"]
Zone = Literal["upper", "middle", "lower"]
Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open, in pixels


@dataclass(frozen=True)
class FindingDetail:
    """How one finding was drawn: the report's words come from these, and so does the picture.

    `side` is the patient's side (right lung on the image's left, as on any PA film).  `box` is
    (row0, col0, row1, col1), half-open, in pixels: every pixel the finding changed lies inside
    it.  `size` is "small"/"moderate"/"large", or for cardiomegaly "mild"/"moderate"/"marked";
    `kind` is "linear" or "wedge" for atelectasis, "" otherwise.
    """

    side: Side | None
    size: str
    zone: Zone | None
    kind: str
    box: Box


@dataclass(frozen=True)
class _Params:
    side: Side | None
    size: str
    zone: Zone | None
    kind: str
    u: tuple[float, ...]  # uniform draws for the drawing, in a fixed order per finding


def _pick(rng: np.random.Generator, options: Mapping[str, float]) -> str:
    names = list(options)
    p = np.array([options[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


_SIZES = {"small": 0.45, "moderate": 0.35, "large": 0.20}


def _finding_params(name: str, rng: np.random.Generator) -> _Params:
    draws = tuple(float(v) for v in rng.random(12))
    if name == "pleural effusion":
        side = _pick(rng, {"right": 0.4, "left": 0.35, "bilateral": 0.25})
        return _Params(side, _pick(rng, _SIZES), "lower", "", draws)
    if name == "pneumothorax":
        side = _pick(rng, {"right": 0.47, "left": 0.47, "bilateral": 0.06})
        return _Params(side, _pick(rng, _SIZES), "upper", "", draws)
    if name == "consolidation":
        side = _pick(rng, {"right": 0.45, "left": 0.35, "bilateral": 0.20})
        zones = {"lower": 0.55, "middle": 0.20, "upper": 0.25} if side != "bilateral" else {"lower": 0.7, "upper": 0.3}
        return _Params(side, _pick(rng, _SIZES), _pick(rng, zones), "", draws)
    if name == "atelectasis":
        side = _pick(rng, {"right": 0.40, "left": 0.45, "bilateral": 0.15})
        if side == "bilateral":
            return _Params(side, _pick(rng, _SIZES), "lower", "linear", draws)
        kind = _pick(rng, {"linear": 0.6, "wedge": 0.4})
        zones = {"lower": 0.75, "middle": 0.10, "upper": 0.15} if kind == "wedge" else {"lower": 0.8, "middle": 0.2}
        return _Params(side, _pick(rng, _SIZES), _pick(rng, zones), kind, draws)
    if name == "cardiomegaly":
        return _Params(None, _pick(rng, {"mild": 0.45, "moderate": 0.35, "marked": 0.20}), None, "", draws)
    if name == "lung opacity":
        side = _pick(rng, {"right": 0.35, "left": 0.35, "bilateral": 0.30})
        return _Params(side, _pick(rng, _SIZES), _pick(rng, {"lower": 0.5, "middle": 0.3, "upper": 0.2}), "", draws)
    raise AssertionError(name)


def _sides(side: Side | None) -> tuple[int, ...]:
    """Indices into the (right, left) pairs of _Anatomy."""
    return {"right": (0,), "left": (1,), "bilateral": (0, 1), None: ()}[side]
