"""The whole film as attenuation: body, lungs with their findings, ribs, mediastinum, heart and abdomen."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .anatomy import _ABDOMEN, _AIR, _HEART, _MEDIASTINUM, _SPINE, _Anatomy, _lung_field
from .canvas import _ellipse, _Grid, _ramp, _texture
from .findings import Box, _Params, _sides
from .lesions import _atelectasis, _Canvas, _consolidation, _effusion, _opacity, _pneumothorax


def _render(a: _Anatomy, params: Mapping[str, _Params], n: int) -> tuple[np.ndarray, dict[str, Box], float]:
    g = _Grid(n)
    x, y = g.x, g.y
    boxes: dict[str, Box] = {}

    # Volume loss of atelectasis raises its hemidiaphragm: the one finding that moves anatomy.
    raise_ = [0.0, 0.0]
    atel = params.get("atelectasis")
    if atel is not None:
        amount = {"small": 0.03, "moderate": 0.05, "large": 0.08}[atel.size] * (1.4 if atel.kind == "wedge" else 1.0)
        for s in _sides(atel.side):
            raise_[s] = amount
    lung, shape, dome, cx, ha = _lung_field(g, a, (raise_[0], raise_[1]))

    # -- lung content: base density, vessels radiating from the hila, hila, texture
    right = x < 0
    hx = np.where(right, -a.hilum[0], a.hilum[0]).astype(np.float32)
    dx = (x - hx) * np.where(right, -1.0, 1.0).astype(np.float32)  # mirrored: same pattern both sides
    dy = y - np.float32(a.hilum[1])
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    texture = _texture(a.texture_seed, 24, (n, n))
    wobble = (theta * np.float32(a.vessel_k) + r * np.float32(5.0) + np.float32(2.5) * texture
              + np.float32(a.vessel_phase))
    v = np.float32(0.5) + np.float32(0.5) * np.cos(wobble)
    v *= v
    v *= v
    v *= v  # ^8: thin bright lines
    vessels = v * np.exp(-r * np.float32(2.6))
    content = np.float32(a.lung) + np.float32(0.11) * vessels + np.float32(0.025) * texture
    content += np.float32(0.10) * np.exp(-(r * r) * np.float32(160.0))  # hilar vessels

    # -- findings inside the lungs, drawn on `content` (order: what lies on top is drawn last)
    canvas = _Canvas(g=g, lung=lung, dome=dome, r=r, theta=theta, content=content, raise_=(raise_[0], raise_[1]))
    for name, draw in (("pneumothorax", _pneumothorax), ("atelectasis", _atelectasis), ("lung opacity", _opacity),
                       ("consolidation", _consolidation), ("pleural effusion", _effusion)):
        if name in params:
            boxes[name] = draw(canvas, a, params[name])

    # -- compose: air, body soft tissue, lungs
    body = _ramp(1.0 - ((x / np.float32(a.body_half_width)) ** 2 + ((y - np.float32(0.1)) / np.float32(1.25)) ** 2),
                 0.04)
    img = np.float32(_AIR) + body * np.float32(a.tissue - _AIR) * (np.float32(1.0) + np.float32(0.04) * texture)
    img += lung * (content - img)

    # -- bones: ribs over the rib cage, clavicles
    ex = (x - cx) / ha
    cage = _ramp(np.float32(1.25) - shape, 0.1) * _ramp(dome + np.float32(0.08) - y, 0.03)
    s = np.sin(np.float32(2 * np.pi)
               * (y * np.float32(a.rib_freq) - np.float32(0.45) * ex * ex + np.float32(a.rib_phase)))
    img += np.float32(0.09) * cage * _ramp(s - np.float32(0.55), 0.2)
    ax = np.abs(x)
    clav_y = np.float32(a.clavicle_y) - np.float32(0.12) * (ax - np.float32(0.08))
    clav = _ramp(np.float32(0.028) - np.abs(y - clav_y), 0.012)
    clav *= _ramp(ax - np.float32(0.07), 0.02) * _ramp(np.float32(0.62) - ax, 0.03)
    img += np.float32(0.13) * clav

    # -- mediastinum, trachea, spine, aortic knob, heart
    med = _ramp(np.float32(a.mediastinum) + np.float32(0.04) * (y + np.float32(0.8)) * (y > -0.8) - ax, 4.0 / n)
    img += med * (np.float32(_MEDIASTINUM) - img)
    trachea = _ramp(np.float32(0.028) - ax, 3.0 / n) * _ramp(np.float32(-0.22) - y, 0.05)
    img -= np.float32(0.22) * trachea
    spine = (_ramp(np.float32(0.055) - ax, 3.0 / n)
             * (np.float32(1.0) + np.float32(0.04) * (np.sin(y * np.float32(56.0)) > 0.8)))
    img += spine * (np.float32(_SPINE) - img)
    rs, cs = g.window(0.03, 0.25, -0.45, -0.15)
    knob = _ramp(1.0 - _ellipse(x[:, cs], y[rs], 0.13, -0.30, 0.075, 0.07), 0.15)
    img[rs, cs] += knob * (np.float32(_MEDIASTINUM) - img[rs, cs])

    thoracic_width = (a.lung_cx[1] + a.lung_a[1]) - (a.lung_cx[0] - a.lung_a[0])
    ctr = a.ctr
    heart_hh = a.heart_hh
    cardio = params.get("cardiomegaly")
    if cardio is not None:
        lo, hi = {"mild": (0.54, 0.59), "moderate": (0.59, 0.64), "marked": (0.64, 0.70)}[cardio.size]
        ctr = lo + (hi - lo) * cardio.u[0]
        heart_hh *= 1.0 + 0.15 * (ctr - a.ctr) / 0.2
    hw = ctr * thoracic_width / 2
    dome_mean = (a.dome[0] + a.dome[1]) / 2
    hcy = dome_mean - a.heart_cy_above_dome + heart_hh * 0.45
    rs, cs = g.window(a.heart_cx - hw - 0.05, a.heart_cx + hw + 0.05, hcy - heart_hh - 0.05, hcy + heart_hh + 0.05)
    hx_, hy_ = (x[:, cs] - np.float32(a.heart_cx)) / np.float32(hw), (y[rs] - np.float32(hcy)) / np.float32(heart_hh)
    heart = _ramp(1.0 - (hx_ * hx_ + hy_ * hy_), 0.06)
    img[rs, cs] += heart * (np.float32(_HEART) - img[rs, cs])
    if cardio is not None:
        boxes["cardiomegaly"] = (rs.start, cs.start, rs.stop, cs.stop)

    # -- below the diaphragm: liver and spleen, the gastric bubble under the left dome
    below = _ramp(y - dome, 4.0 / n) * body * _ramp(np.float32(1.1) - (np.abs(x) / np.float32(a.body_half_width)), 0.1)
    below *= (np.abs(x - cx) < ha * np.float32(1.3))
    img += below * (np.float32(_ABDOMEN) - img)
    gx, gy = a.lung_cx[1] - 0.02, a.dome[1] + 0.09
    rs, cs = g.window(gx - 0.12, gx + 0.12, gy - 0.07, gy + 0.07)
    bubble = _ramp(1.0 - _ellipse(x[:, cs], y[rs], gx, gy, 0.09, 0.045), 0.3)
    img[rs, cs] -= np.float32(0.3) * bubble * below[rs, cs]

    img *= np.float32(1.0) + np.float32(a.heel) * y  # exposure gradient (heel effect)
    return img, boxes, float(ctr)
