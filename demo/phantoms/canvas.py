"""Drawing primitives on a grid of normalised coordinates: soft edges, ellipses, smooth texture and boxes.

Coordinates: x, y in [-1, 1], y down, image left = patient right; s = 0 is the patient's right side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .findings import Box


class _Grid:
    """Pixel-centre coordinates as a row (1, n) and a column (n, 1): broadcasting builds the image."""

    def __init__(self, n: int) -> None:
        c = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1
        self.n = n
        self.x = c[None, :]
        self.y = c[:, None]

    def col(self, v: float) -> int:
        return int(np.clip(np.floor((v + 1) / 2 * self.n), 0, self.n))

    def row(self, v: float) -> int:
        return self.col(v)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Rows and columns that cover [x0, x1] × [y0, y1], plus one pixel for soft edges."""
        r0, r1 = max(self.row(y0) - 1, 0), min(self.row(y1) + 2, self.n)
        c0, c1 = max(self.col(x0) - 1, 0), min(self.col(x1) + 2, self.n)
        return slice(r0, max(r1, r0)), slice(c0, max(c1, c0))


def _side_window(g: _Grid, s: int, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    """g.window, kept to one side of the midline: a lung finding never crosses it."""
    rs, cs = g.window(x0, x1, y0, y1)
    half = g.n // 2  # pixel centres left of the midline are columns 0 .. n/2 - 1
    lo, hi = (0, half) if s == 0 else (half, g.n)
    c0, c1 = min(max(cs.start, lo), hi), max(min(cs.stop, hi), lo)
    return rs, slice(c0, max(c1, c0))


def _side_mask(xs: np.ndarray, s: int) -> np.ndarray:
    """True where x lies on lung `s`'s side of the midline, as _side_window splits the columns."""
    return (xs < 0) if s == 0 else (xs >= 0)


def _ramp(v: np.ndarray, width: float) -> np.ndarray:
    """0 → 1 as v goes from 0 to `width`: a soft edge without exp()."""
    return np.clip(v * np.float32(1.0 / width), 0.0, 1.0)


def _ellipse(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """The implicit ellipse: below 1 inside, 1 on the outline."""
    u = (xs - np.float32(cx)) * np.float32(1.0 / rx)
    v = (ys - np.float32(cy)) * np.float32(1.0 / ry)
    return u * u + v * v


def _texture(seed: int, cells: int, shape: tuple[int, int]) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a few cells of noise, bicubic upsampling (cheap)."""
    rng = np.random.default_rng(seed)
    small = rng.standard_normal((cells, cells)).astype(np.float32) * np.float32(0.6)
    h, w = shape
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.Resampling.BICUBIC))


def _box(sl: tuple[slice, slice]) -> Box:
    rs, cs = sl
    return rs.start, cs.start, rs.stop, cs.stop


def _union(*boxes: Box) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
