"""One patient's anatomy as random parameters in normalised coordinates, and the lung fields drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import _Grid, _ramp
from .findings import Zone

# Attenuation in [0, 1], brighter = denser, as MONOCHROME2 shows it.
_AIR, _FLUID, _MEDIASTINUM, _HEART, _SPINE, _ABDOMEN = 0.02, 0.60, 0.70, 0.74, 0.82, 0.66


@dataclass(frozen=True)
class _Anatomy:
    body_half_width: float
    lung_cx: tuple[float, float]  # (right lung, left lung): right lung on the image's left, x < 0
    lung_a: tuple[float, float]  # half-widths
    lung_top: tuple[float, float]
    lung_bottom: float  # where the lung outline would close below the diaphragm
    dome: tuple[float, float]  # dome top (highest point) of each hemidiaphragm
    dome_depth: float  # how much lower the costophrenic angle is than the dome top
    mediastinum: float  # half-width of the upper mediastinum
    heart_cx: float
    heart_cy_above_dome: float
    heart_hh: float
    ctr: float  # cardiothoracic ratio of the normal heart
    hilum: tuple[float, float]  # (|x|, y) of both hila
    vessel_k: int
    vessel_phase: float
    rib_freq: float
    rib_phase: float
    clavicle_y: float
    tissue: float  # soft-tissue attenuation
    lung: float  # lung attenuation
    noise: float
    heel: float  # exposure gradient top to bottom
    lo: float  # stored range used, as fractions of the top value
    hi: float
    window_center: float  # as fractions of the used range
    window_width: float
    texture_seed: int


def _anatomy(rng: np.random.Generator) -> _Anatomy:
    u = rng.uniform
    cx = u(0.40, 0.46)
    dome_right = u(0.36, 0.44)
    dome_left = dome_right + u(0.02, 0.08)  # the left hemidiaphragm usually sits a little lower
    return _Anatomy(
        body_half_width=u(0.86, 0.95),
        lung_cx=(-cx + u(-0.02, 0.02), cx + u(-0.02, 0.02)),
        lung_a=(u(0.28, 0.33), u(0.27, 0.32)),
        lung_top=(u(-0.84, -0.76), u(-0.84, -0.76)),
        lung_bottom=u(0.74, 0.80),
        dome=(dome_right, dome_left),
        dome_depth=u(0.18, 0.26),
        mediastinum=u(0.09, 0.12),
        heart_cx=u(0.05, 0.11),
        heart_cy_above_dome=u(0.08, 0.14),
        heart_hh=u(0.22, 0.28),
        ctr=u(0.40, 0.48),
        hilum=(u(0.16, 0.21), u(-0.10, 0.00)),
        vessel_k=int(rng.integers(14, 22)),
        vessel_phase=u(0, 2 * np.pi),
        rib_freq=u(4.2, 5.0),
        rib_phase=u(0, 1),
        clavicle_y=u(-0.72, -0.62),
        tissue=u(0.46, 0.54),
        lung=u(0.12, 0.19),
        noise=u(0.006, 0.014),
        heel=u(-0.06, 0.06),
        lo=u(0.02, 0.08),
        hi=u(0.80, 0.95),
        window_center=u(0.42, 0.52),
        window_width=u(0.80, 0.98),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _lung_field(g: _Grid, a: _Anatomy, dome_raise: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Soft lung mask (0..1) and the implicit shape of each lung, one array for both sides."""
    right = g.x < 0
    cx = np.where(right, a.lung_cx[0], a.lung_cx[1]).astype(np.float32)
    ha = np.where(right, a.lung_a[0], a.lung_a[1]).astype(np.float32)
    top = np.where(right, a.lung_top[0], a.lung_top[1]).astype(np.float32)
    cy = (top + a.lung_bottom) / 2
    hb = (a.lung_bottom - top) / 2
    ex = (g.x - cx) / ha
    dome_top = np.where(right, a.dome[0] - dome_raise[0], a.dome[1] - dome_raise[1]).astype(np.float32)
    dome = dome_top + np.float32(a.dome_depth) * np.minimum(ex * ex, 1.5)
    ey = (g.y - cy) / hb
    ey2 = ey * ey
    shape = ex * ex + np.where(ey < 0, ey2, ey2 * ey2)  # round apex, boxy base
    n = g.n
    edge = 6.0 / n  # about three pixels
    lung = _ramp(1.0 - shape, 0.08)
    lung *= _ramp(dome - g.y, edge)
    lung *= _ramp(np.abs(g.x) - np.float32(a.mediastinum), edge)
    return lung, shape, dome, cx, ha


def _lateral(s: int) -> float:
    """Direction of the chest wall from the lung centre along x: the right lung is on the left."""
    return -1.0 if s == 0 else 1.0


def _zone_y(a: _Anatomy, s: int, zone: Zone) -> float:
    top, bottom = a.lung_top[s], a.dome[s]
    return top + {"upper": 0.30, "middle": 0.58, "lower": 0.80}[zone] * (bottom - top)
