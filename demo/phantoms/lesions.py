"""Each lung finding's drawing, painted on the lungs' content before the film is composed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import _FLUID, _Anatomy, _lateral, _zone_y
from .canvas import _box, _ellipse, _Grid, _ramp, _side_mask, _side_window, _texture, _union
from .findings import Box, _Params, _sides


@dataclass(frozen=True)
class _Canvas:
    """What the finding painters need: the grid, the lung fields, and the lungs' picture to paint on."""

    g: _Grid
    lung: np.ndarray  # soft lung mask, 0..1
    dome: np.ndarray  # the diaphragm's height in each column, (1, n)
    r: np.ndarray  # distance from the nearer hilum
    theta: np.ndarray  # angle from the hilum, mirrored so 0 points laterally on both sides, y down
    content: np.ndarray  # lung density before compositing; painted in place
    raise_: tuple[float, float]  # how much each hemidiaphragm was raised (atelectasis)


def _effusion(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """Fluid on the lung base, deepest at the chest wall (a meniscus): a small effusion blunts the
    costophrenic angle, a large one fills the lower lung zone."""
    # fluid depth above the lung base at the lateral wall and at the medial end, by size
    depth = {"small": ((0.09, 0.12), 0.0), "moderate": ((0.14, 0.22), 0.05), "large": ((0.30, 0.42), 0.18)}[p.size]
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        lateral = depth[0][0] + (depth[0][1] - depth[0][0]) * p.u[i]
        medial = depth[1]
        x0, x1 = sorted((a.lung_cx[s] - 1.05 * a.lung_a[s], a.lung_cx[s] + 1.05 * a.lung_a[s]))
        x0, x1 = (x0, min(x1, 0.0)) if s == 0 else (max(x0, 0.0), x1)
        sl = _side_window(cv.g, s, x0, x1, a.dome[s] - lateral - 0.12, a.dome[s] + a.dome_depth + 0.06)
        xs, ys = cv.g.x[:, sl[1]], cv.g.y[sl[0]]
        # the lung base in each column: the dome, or lateral to it the lung's own outline
        ex = (xs - np.float32(a.lung_cx[s])) / np.float32(a.lung_a[s])
        top = a.lung_top[s]
        outline = np.float32((top + a.lung_bottom) / 2) + np.float32((a.lung_bottom - top) / 2) * np.sqrt(
            np.sqrt(np.clip(np.float32(1.0) - ex * ex, 0.0, 1.0)))
        base = np.minimum(cv.dome[:, sl[1]], outline)
        wall = np.float32(a.lung_cx[s] + _lateral(s) * a.lung_a[s])
        t = np.clip(np.abs(xs - wall) / np.float32(2 * a.lung_a[s]), 0.0, 1.0)
        reach = 0.6 if p.size == "small" else 1.0  # a small effusion stays in the lateral angle
        u = np.clip(t / np.float32(reach), 0.0, 1.0)
        height = np.float32(medial) + np.float32(lateral - medial) * (np.float32(1.0) - u) ** 2
        if p.size == "small":
            height = height * (u < 1.0)
        level = base - height
        alpha = _ramp(ys - level, 0.025) * (height > 0.005)
        view = cv.content[sl]
        view += alpha * (np.float32(_FLUID) - view)
        boxes.append(_box(sl))
    return _union(*boxes)


def _pneumothorax(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """A lucent rim without vessel markings around the apex and lateral wall, bounded by the
    visceral pleural line of the partly collapsed lung."""
    depth = {"small": (0.035, 0.05), "moderate": (0.07, 0.10), "large": (0.13, 0.18)}[p.size]
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        d = depth[0] + (depth[1] - depth[0]) * p.u[i]
        x0, x1 = sorted((a.lung_cx[s] - a.lung_a[s], a.lung_cx[s] + a.lung_a[s]))
        y0, y1 = a.lung_top[s], a.dome[s] + a.dome_depth
        sl = _side_window(cv.g, s, x0, x1, y0, y1)
        xs, ys = cv.g.x[:, sl[1]], cv.g.y[sl[0]]
        # the collapsed lung: lateral wall moved in by d, apex down by d; medial edge and base kept
        ca = np.float32(a.lung_a[s] - d / 2)
        ccx = np.float32(a.lung_cx[s] - _lateral(s) * d / 2)
        top = a.lung_top[s] + d
        ccy = np.float32((top + a.lung_bottom) / 2)
        chb = np.float32((a.lung_bottom - top) / 2)
        ex = (xs - ccx) / ca
        ey = (ys - ccy) / chb
        ey2 = ey * ey
        inner = ex * ex + np.where(ey < 0, ey2, ey2 * ey2)
        # fade the effect out towards the base, where a small pneumothorax is not seen on an erect film
        upper = _ramp(np.float32(a.lung_top[s] + 0.75 * (y1 - a.lung_top[s])) - ys, 0.15)
        side_mask = _side_mask(xs, s)
        rim = _ramp(inner - np.float32(1.0), 0.04) * upper * side_mask
        edge = np.float32(0.018 * (512 / cv.g.n) ** 0.5)
        line = _ramp(edge - np.abs(inner - np.float32(1.0)), float(edge)) * upper * side_mask
        view = cv.content[sl]
        view += rim * (np.float32(0.45 * a.lung) - view)  # air only: no markings, darker than lung
        view += np.float32(0.16) * line * cv.lung[sl]
        boxes.append(_box(sl))
    return _union(*boxes)


def _patch(
    cv: _Canvas, a: _Anatomy, p: _Params, i: int, s: int, *,
    radius: tuple[float, float], elongation: float, offset: float, lift: float, margin: float,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """An elliptical patch in the finding's zone of lung `s` (the i-th side drawn): the window around it,
    the window's x coordinates, and the implicit ellipse there (below 1 inside).

    Its half-widths come from `radius` (by p.u[i]) and `elongation` (taller by p.u[2 + i]); its centre lies
    `offset` half-widths of the lung from the lung's centre towards the chest wall, and in the lower zone
    at least `lift` of its half-height above the dome.  The window reaches `margin` half-widths around it.
    """
    rx = radius[0] + (radius[1] - radius[0]) * p.u[i]
    ry = rx * (elongation + 0.4 * p.u[2 + i])
    px = a.lung_cx[s] + _lateral(s) * a.lung_a[s] * offset
    py = _zone_y(a, s, p.zone)
    if p.zone == "lower":
        py = min(py, a.dome[s] - ry * lift)
    sl = _side_window(cv.g, s, px - rx * margin, px + rx * margin, py - ry * margin, py + ry * margin)
    xs, ys = cv.g.x[:, sl[1]], cv.g.y[sl[0]]
    return sl, xs, _ellipse(xs, ys, px, py, rx, ry)


def _consolidation(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """Dense, patchy, lobar-shaped opacity with air bronchograms."""
    radius = {"small": (0.07, 0.09), "moderate": (0.11, 0.14), "large": (0.16, 0.21)}[p.size]
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        sl, xs, q = _patch(cv, a, p, i, s, radius=radius, elongation=1.0, offset=0.05 + 0.3 * p.u[4 + i], lift=0.4,
                           margin=1.6)
        patch = _texture(int(p.u[6 + i] * 2**31), 6, q.shape)
        alpha = _ramp(np.float32(1.0) - q * (np.float32(1.0) + np.float32(0.45) * patch), 0.18)
        t = np.cos(cv.theta[sl] * np.float32(11.0) + cv.r[sl] * np.float32(2.0))
        bronchi = _ramp(np.float32(0.16) - np.abs(t), 0.16) * _ramp(cv.r[sl] - np.float32(0.08), 0.05) * alpha * alpha
        side_mask = _side_mask(xs, s)
        alpha = alpha * side_mask
        view = cv.content[sl]
        view += alpha * (np.float32(0.56) - view)
        view -= np.float32(0.24) * bronchi * side_mask
        boxes.append(_box(sl))
    return _union(*boxes)


def _opacity(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """Hazy, ill-defined opacity: a soft partial-density cloud; the vessels still show through."""
    radius = {"small": (0.08, 0.11), "moderate": (0.12, 0.16), "large": (0.17, 0.23)}[p.size]
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        sl, xs, q = _patch(cv, a, p, i, s, radius=radius, elongation=1.1, offset=0.25 * p.u[4 + i] - 0.05, lift=0.3,
                           margin=2.4)
        strength = 0.55 + 0.25 * p.u[6 + i]
        side_mask = _side_mask(xs, s)
        alpha = np.float32(strength) * np.exp(-q * np.float32(1.2)) * _ramp(np.float32(5.5) - q, 0.5) * side_mask
        view = cv.content[sl]
        view += alpha * (np.float32(0.50) - view)
        boxes.append(_box(sl))
    return _union(*boxes)


def _atelectasis(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """Linear (plate-like) bands or a wedge of collapsed lung pointing at the hilum, with volume
    loss: the hemidiaphragm on that side is raised (done in _lung_field)."""
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        # The raised dome moves the lung base, the ribs' lower end and the abdomen's upper edge on
        # this side: from the new dome top to the old dome's lowest point, across the abdomen.
        reach_x = a.lung_a[s] * 1.35
        side_x0, side_x1 = a.lung_cx[s] - reach_x, a.lung_cx[s] + reach_x
        side_x0, side_x1 = (side_x0, min(side_x1, 0.0)) if s == 0 else (max(side_x0, 0.0), side_x1)
        boxes.append(_box(_side_window(cv.g, s, side_x0, side_x1, a.dome[s] - cv.raise_[s] - 0.04,
                                   a.dome[s] + a.dome_depth * 1.5 + 0.13)))
        if p.kind == "linear":
            length = {"small": 0.14, "moderate": 0.2, "large": 0.26}[p.size] * (0.9 + 0.2 * p.u[i])
            thick = {"small": 0.012, "moderate": 0.016, "large": 0.020}[p.size]
            px = a.lung_cx[s] + _lateral(s) * a.lung_a[s] * (0.1 + 0.2 * p.u[2 + i])
            py = (a.dome[s] - cv.raise_[s] - 0.07 - 0.05 * p.u[4 + i]) if p.zone == "lower" else _zone_y(a, s, "middle")
            angle = (p.u[6 + i] - 0.5) * 0.5 * _lateral(s)
            ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
            reach = length / 2 + 0.03
            sl = _side_window(cv.g, s, px - reach, px + reach, py - reach * 0.6, py + reach * 0.6)
            xs, ys = cv.g.x[:, sl[1]] - np.float32(px), cv.g.y[sl[0]] - np.float32(py)
            along = xs * ca + ys * sa
            across = -xs * sa + ys * ca
            alpha = (_ramp(np.float32(thick) - np.abs(across), thick * 0.6)
                     * _ramp(np.float32(length / 2) - np.abs(along), 0.03))
            target = np.float32(0.58)
        else:
            # wedge: apex at the hilum, base on the pleura, towards the collapsed lobe
            hx = -a.hilum[0] if s == 0 else a.hilum[0]
            direction = {"upper": -0.9, "middle": 0.15, "lower": 0.9}[p.zone]  # radians below the horizontal, laterally
            half = {"small": 0.16, "moderate": 0.22, "large": 0.30}[p.size]
            reach = a.lung_a[s] * (1.3 if p.zone != "upper" else 1.1)
            ex, ey = hx + _lateral(s) * reach * np.cos(direction), a.hilum[1] + reach * np.sin(direction)
            x_lo, x_hi = sorted((hx, ex))
            sl = _side_window(cv.g, s, x_lo - 0.12, x_hi + 0.12, min(a.hilum[1], ey) - 0.15, max(a.hilum[1], ey) + 0.15)
            # theta is measured laterally (mirrored), y down: compare angles directly
            dtheta = np.abs(cv.theta[sl] - np.float32(direction))
            alpha = _ramp(np.float32(half) - dtheta, 0.03)
            alpha *= _ramp(np.float32(reach) - cv.r[sl], 0.04) * _ramp(cv.r[sl] - np.float32(0.03), 0.03)
            target = np.float32(0.55)
        side_mask = _side_mask(cv.g.x[:, sl[1]], s)
        alpha = alpha * side_mask
        view = cv.content[sl]
        view += alpha * (target - view)
        boxes.append(_box(sl))
    return _union(*boxes)
