"""Synthetic chest radiographs with known findings, as DICOM, for the demo model and the tests; no Django.

A phantom is a cartoon of a PA chest film: dark lungs with vessel markings, mediastinum, spine,
trachea, heart, ribs, clavicles, diaphragm and a gastric bubble, with any of the six critical
findings drawn in where a radiologist would look for them.  Each phantom comes with its true
labels, a templated report (FINDINGS / IMPRESSION) that says exactly those findings, a short
clinical history, the stored pixels, a DICOM file that the product's ingest accepts, and the 8-bit
display PNG made by the product's own renderer (trial.dicom.render_display).

Everything is a function of the seed: the anatomy, the noise and the wording each draw from their
own random stream, and each finding from one more, so the same seed with and without a finding
gives the same patient with and without it (the tests compare the two images).

Not a patient image, and not for clinical use: the DICOM header says so in Image Comments.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from trial.dicom import dicom_bytes, render_display

__all__ = [
    "FINDINGS",
    "FindingDetail",
    "Phantom",
    "Report",
    "make_dataset",
    "make_phantom",
    "random_findings",
]

FINDINGS: Final = (
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "atelectasis",
    "cardiomegaly",
    "lung opacity",
)

Side = Literal["right", "left", "bilateral"]
Zone = Literal["upper", "middle", "lower"]
Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open, in pixels


@dataclass(frozen=True)
class Report:
    """A radiology report in the two sections the paper's model writes."""

    findings: str
    impression: str

    @property
    def text(self) -> str:
        return f"FINDINGS: {self.findings}\n\nIMPRESSION: {self.impression}"


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


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays field by field is ambiguous
class Phantom:
    seed: int
    pixels: np.ndarray  # stored values, uint16, (size, size), read-only
    png: bytes  # 8-bit display image, rendered by trial.dicom.render_display
    dicom: bytes  # a CR or DX Part 10 file, with fake identifying details to de-identify
    labels: Mapping[str, bool]  # every name of FINDINGS → drawn or not
    report: Report
    clinical_history: str
    details: Mapping[str, FindingDetail]  # only the findings present
    cardiothoracic_ratio: float


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

# Prevalence weights among abnormal films; roughly the order seen in emergency chest films.
_WEIGHTS: Final = MappingProxyType({
    "pleural effusion": 0.22,
    "lung opacity": 0.22,
    "atelectasis": 0.18,
    "cardiomegaly": 0.16,
    "consolidation": 0.12,
    "pneumothorax": 0.10,
})
_P_NORMAL: Final = 0.35
_N_FINDINGS_P: Final = (0.55, 0.30, 0.12, 0.03)  # one, two, three, four findings when abnormal


def random_findings(rng: np.random.Generator) -> set[str]:
    """A realistic mix: about 35 % normal films; otherwise one to four findings, the common ones
    more often (prevalence weights above)."""
    if rng.random() < _P_NORMAL:
        return set()
    k = 1 + int(rng.choice(len(_N_FINDINGS_P), p=_N_FINDINGS_P))
    names = list(_WEIGHTS)
    weights = np.array([_WEIGHTS[n] for n in names])
    chosen = rng.choice(len(names), size=k, replace=False, p=weights / weights.sum())
    return {names[i] for i in chosen}


def make_dataset(n: int, *, seed: int, size: int = 512) -> list[Phantom]:
    """`n` phantoms with findings drawn by random_findings; the same (n, seed, size), the same list,
    and the first k phantoms of a longer list are the same as a list of k."""
    if n < 0:
        raise ValueError("n must be at least 0")
    out = []
    for i in range(n):
        rng = np.random.default_rng([_STREAM_DATASET, seed, i])
        findings = random_findings(rng)
        phantom_seed = int(rng.integers(0, 2**31 - 1))
        out.append(make_phantom(findings=sorted(findings), seed=phantom_seed, size=size))
    return out


def make_phantom(
    *,
    findings: Iterable[str] = (),
    seed: int,
    size: int = 512,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str = "CR",
) -> Phantom:
    """One synthetic PA chest radiograph with exactly `findings` drawn in (names from FINDINGS)."""
    present = _check_findings(findings)
    if not 64 <= size <= 4096:
        raise ValueError(f"size must be between 64 and 4096 pixels, not {size}")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be between 8 and 16, not {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {photometric!r}")
    if modality not in ("CR", "DX"):
        raise ValueError(f"modality must be CR or DX, not {modality!r}")
    if seed < 0:
        raise ValueError("seed must be at least 0")

    anatomy = _anatomy(np.random.default_rng([_STREAM_ANATOMY, seed]))
    params = {
        name: _finding_params(name, np.random.default_rng([_STREAM_FINDING, seed, FINDINGS.index(name)]))
        for name in FINDINGS
        if name in present
    }
    # Smooth anatomy drawn at half resolution and upsampled (a quarter of the work), then
    # quantum noise at full resolution.
    work = size // 2 if size >= 256 and size % 2 == 0 else size
    image, boxes, ctr = _render(anatomy, params, work)
    if work != size:
        image = np.asarray(Image.fromarray(image, mode="F").resize((size, size), Image.Resampling.BILINEAR))
        f = size // work
        boxes = {k: (max(r0 * f - f, 0), max(c0 * f - f, 0), min(r1 * f + f, size), min(c1 * f + f, size))
                 for k, (r0, c0, r1, c1) in boxes.items()}
    noise = np.random.default_rng([_STREAM_NOISE, seed]).standard_normal((size, size), dtype=np.float32)
    image = image + noise * np.float32(anatomy.noise)
    np.clip(image, 0.0, 1.0, out=image)
    pixels, window = _to_stored(image, anatomy, bits_stored, photometric)

    details = {
        name: FindingDetail(side=p.side, size=p.size, zone=p.zone, kind=p.kind, box=boxes[name])
        for name, p in params.items()
    }
    person = _person(np.random.default_rng([_STREAM_PERSON, seed]))
    text_rng = np.random.default_rng([_STREAM_TEXT, seed])
    report = _report(details, text_rng)
    history = _history(person, details, np.random.default_rng([_STREAM_HISTORY, seed]))

    ds = _dataset(pixels, window, person, seed=seed, present=present, bits_stored=bits_stored,
                  photometric=photometric, modality=modality, size=size)
    png = render_display(ds, thumb_side=16).png  # the thumbnail is not used: keep it cheap
    return Phantom(
        seed=seed,
        pixels=pixels,
        png=png,
        dicom=dicom_bytes(ds),
        labels=MappingProxyType({name: name in present for name in FINDINGS}),
        report=report,
        clinical_history=history,
        details=MappingProxyType(details),
        cardiothoracic_ratio=ctr,
    )


def _check_findings(findings: Iterable[str]) -> frozenset[str]:
    if isinstance(findings, str):
        raise TypeError("findings must be a collection of names, not one string")
    names = frozenset(" ".join(str(f).lower().split()) for f in findings)
    unknown = sorted(names - set(FINDINGS))
    if unknown:
        raise ValueError(f"unknown finding(s) {', '.join(map(repr, unknown))}; phantoms draw {', '.join(FINDINGS)}")
    return names


# Independent random streams (the first word of each SeedSequence key).
_STREAM_ANATOMY, _STREAM_NOISE, _STREAM_TEXT, _STREAM_HISTORY, _STREAM_PERSON, _STREAM_FINDING, _STREAM_DATASET = range(
    7
)


# ---------------------------------------------------------------------------------------------
# Anatomy and finding parameters (normalised coordinates: x, y in [-1, 1], y down, image left
# = patient right)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Rendering (attenuation in [0, 1], brighter = denser, as MONOCHROME2 shows it)
# ---------------------------------------------------------------------------------------------

_AIR, _FLUID, _MEDIASTINUM, _HEART, _SPINE, _ABDOMEN = 0.02, 0.60, 0.70, 0.74, 0.82, 0.66


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
    wobble = theta * np.float32(a.vessel_k) + r * np.float32(5.0) + np.float32(2.5) * texture + np.float32(a.vessel_phase)
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
    body = _ramp(1.0 - ((x / np.float32(a.body_half_width)) ** 2 + ((y - np.float32(0.1)) / np.float32(1.25)) ** 2), 0.04)
    img = np.float32(_AIR) + body * np.float32(a.tissue - _AIR) * (np.float32(1.0) + np.float32(0.04) * texture)
    img += lung * (content - img)

    # -- bones: ribs over the rib cage, clavicles
    ex = (x - cx) / ha
    cage = _ramp(np.float32(1.25) - shape, 0.1) * _ramp(dome + np.float32(0.08) - y, 0.03)
    s = np.sin(np.float32(2 * np.pi) * (y * np.float32(a.rib_freq) - np.float32(0.45) * ex * ex + np.float32(a.rib_phase)))
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
    spine = _ramp(np.float32(0.055) - ax, 3.0 / n) * (np.float32(1.0) + np.float32(0.04) * (np.sin(y * np.float32(56.0)) > 0.8))
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


def _box(sl: tuple[slice, slice]) -> Box:
    rs, cs = sl
    return rs.start, cs.start, rs.stop, cs.stop


def _union(*boxes: Box) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _lateral(s: int) -> float:
    """Direction of the chest wall from the lung centre along x: the right lung is on the left."""
    return -1.0 if s == 0 else 1.0


def _zone_y(a: _Anatomy, s: int, zone: Zone) -> float:
    top, bottom = a.lung_top[s], a.dome[s]
    return top + {"upper": 0.30, "middle": 0.58, "lower": 0.80}[zone] * (bottom - top)


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
        side_mask = (xs < 0) if s == 0 else (xs >= 0)
        rim = _ramp(inner - np.float32(1.0), 0.04) * upper * side_mask
        edge = np.float32(0.018 * (512 / cv.g.n) ** 0.5)
        line = _ramp(edge - np.abs(inner - np.float32(1.0)), float(edge)) * upper * side_mask
        view = cv.content[sl]
        view += rim * (np.float32(0.45 * a.lung) - view)  # air only: no markings, darker than lung
        view += np.float32(0.16) * line * cv.lung[sl]
        boxes.append(_box(sl))
    return _union(*boxes)


def _consolidation(cv: _Canvas, a: _Anatomy, p: _Params) -> Box:
    """Dense, patchy, lobar-shaped opacity with air bronchograms."""
    radius = {"small": (0.07, 0.09), "moderate": (0.11, 0.14), "large": (0.16, 0.21)}[p.size]
    boxes = []
    for i, s in enumerate(_sides(p.side)):
        rx = radius[0] + (radius[1] - radius[0]) * p.u[i]
        ry = rx * (1.0 + 0.4 * p.u[2 + i])
        px = a.lung_cx[s] + _lateral(s) * a.lung_a[s] * (0.05 + 0.3 * p.u[4 + i])
        py = _zone_y(a, s, p.zone)
        if p.zone == "lower":
            py = min(py, a.dome[s] - ry * 0.4)
        sl = _side_window(cv.g, s, px - rx * 1.6, px + rx * 1.6, py - ry * 1.6, py + ry * 1.6)
        xs, ys = cv.g.x[:, sl[1]], cv.g.y[sl[0]]
        q = _ellipse(xs, ys, px, py, rx, ry)
        patch = _texture(int(p.u[6 + i] * 2**31), 6, q.shape)
        alpha = _ramp(np.float32(1.0) - q * (np.float32(1.0) + np.float32(0.45) * patch), 0.18)
        t = np.cos(cv.theta[sl] * np.float32(11.0) + cv.r[sl] * np.float32(2.0))
        bronchi = _ramp(np.float32(0.16) - np.abs(t), 0.16) * _ramp(cv.r[sl] - np.float32(0.08), 0.05) * alpha * alpha
        side_mask = (xs < 0) if s == 0 else (xs >= 0)
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
        rx = radius[0] + (radius[1] - radius[0]) * p.u[i]
        ry = rx * (1.1 + 0.4 * p.u[2 + i])
        px = a.lung_cx[s] + _lateral(s) * a.lung_a[s] * (0.25 * p.u[4 + i] - 0.05)
        py = _zone_y(a, s, p.zone)
        if p.zone == "lower":
            py = min(py, a.dome[s] - ry * 0.3)
        strength = 0.55 + 0.25 * p.u[6 + i]
        sl = _side_window(cv.g, s, px - rx * 2.4, px + rx * 2.4, py - ry * 2.4, py + ry * 2.4)
        xs, ys = cv.g.x[:, sl[1]], cv.g.y[sl[0]]
        q = _ellipse(xs, ys, px, py, rx, ry)
        side_mask = (xs < 0) if s == 0 else (xs >= 0)
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
            alpha = _ramp(np.float32(thick) - np.abs(across), thick * 0.6) * _ramp(np.float32(length / 2) - np.abs(along), 0.03)
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
        side_mask = (cv.g.x[:, sl[1]] < 0) if s == 0 else (cv.g.x[:, sl[1]] >= 0)
        alpha = alpha * side_mask
        view = cv.content[sl]
        view += alpha * (target - view)
        boxes.append(_box(sl))
    return _union(*boxes)


# ---------------------------------------------------------------------------------------------
# Stored values and the DICOM file
# ---------------------------------------------------------------------------------------------


def _to_stored(img: np.ndarray, a: _Anatomy, bits_stored: int, photometric: str) -> tuple[np.ndarray, tuple[float, float]]:
    top = 2**bits_stored - 1
    lo, hi = a.lo * top, a.hi * top
    values = np.rint(img * np.float32(hi - lo) + np.float32(lo))
    center = lo + a.window_center * (hi - lo)
    width = max(a.window_width * (hi - lo), 2.0)
    if photometric == "MONOCHROME1":
        values = np.float32(top) - values
        center = top - center
    pixels = values.astype(np.uint16)
    pixels.setflags(write=False)
    return pixels, (float(center), float(width))


@dataclass(frozen=True)
class _Person:
    name: str
    patient_id: str
    sex: str
    age: int
    birth_date: str
    study_date: str
    study_time: str
    accession: str
    institution: str
    referring: str


# Invented names, put together at random: they name nobody, but they look like a hospital's data,
# so de-identification has something real-looking to remove.
_FAMILY = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Castillo", "Brennan", "Haddad", "Kowalczyk",
           "Ferreira", "Abernathy", "Nakamura", "Oyelaran", "Petrov", "Van der Berg", "Quispe", "Mbeki", "Sørensen")
_GIVEN_F = ("Maria", "Ingrid", "Aiko", "Fatima", "Claire", "Joanna", "Lucia", "Amara", "Elena", "Nadia")
_GIVEN_M = ("Tomas", "Kenji", "Samuel", "Omar", "Pierre", "Marek", "Diego", "Chidi", "Lars", "Ivan")
_INSTITUTIONS = ("Riverside General Hospital", "St Brendan's Infirmary", "Northgate Community Hospital",
                 "Lakeshore University Medical Centre", "Harbourview District Hospital")
_REFERRING = ("Whitfield^Anna", "Osei^Kwame", "Marchetti^Paolo", "Yilmaz^Deniz", "Gallagher^Ruth")


def _person(rng: np.random.Generator) -> _Person:
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    family = rng.choice(_FAMILY)
    age = int(rng.integers(18, 92))
    study = _dt.date(2023, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    birth = study - _dt.timedelta(days=age * 365 + int(rng.integers(0, 365)))
    seconds = int(rng.integers(7 * 3600, 22 * 3600))
    return _Person(
        name=f"{family}^{given}",
        patient_id=f"MRN{int(rng.integers(10**7, 10**8))}",
        sex=sex,
        age=age,
        birth_date=birth.strftime("%Y%m%d"),
        study_date=study.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        accession=f"ACC{int(rng.integers(10**8, 10**9))}",
        institution=str(rng.choice(_INSTITUTIONS)),
        referring=str(rng.choice(_REFERRING)),
    )


def _dataset(
    pixels: np.ndarray,
    window: tuple[float, float],
    person: _Person,
    *,
    seed: int,
    present: frozenset[str],
    bits_stored: int,
    photometric: str,
    modality: str,
    size: int,
) -> FileDataset:
    dx = modality == "DX"
    key = ["cxr-trial phantom", str(seed), ",".join(sorted(present)), str(size), str(bits_stored), photometric, modality]
    study_uid = generate_uid(entropy_srcs=[*key[:2], "study"])
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the invented names are not all ASCII
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation if dx else ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*key, "instance"])
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = person.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = person.study_time
    ds.AccessionNumber = person.accession
    ds.Modality = modality
    ds.Manufacturer = "CXR-Trial"
    ds.InstitutionName = person.institution
    ds.ReferringPhysicianName = person.referring
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesDescription = "PA"
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.SoftwareVersions = "ai.phantoms 1"
    ds.PatientName = person.name
    ds.PatientID = person.patient_id
    ds.PatientBirthDate = person.birth_date
    ds.PatientSex = person.sex
    ds.PatientAge = f"{person.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.KVP = "120"
    ds.ImagerPixelSpacing = [f"{430.0 / size:.4f}"] * 2
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*key, "series"])
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = "Synthetic phantom generated by CXR-Trial: not a patient image, not for clinical use."
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=bits_stored,
                      generate_instance_uid=False)
    ds.WindowCenter = f"{window[0]:.1f}"
    ds.WindowWidth = f"{window[1]:.1f}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return FileDataset("", ds, file_meta=meta, preamble=b"\x00" * 128)


# ---------------------------------------------------------------------------------------------
# Words: the report and the clinical history
# ---------------------------------------------------------------------------------------------


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _choose(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _lobe(side: str, zone: str) -> str:
    if side == "left" and zone == "middle":
        return "lingula"
    return f"{side} {zone} lobe"


def _lobe_adj(side: str, zone: str) -> str:
    return "lingular" if side == "left" and zone == "middle" else f"{side} {zone} lobe"


def _sentences(name: str, d: FindingDetail, rng: np.random.Generator) -> tuple[str, str]:
    """(a FINDINGS sentence, an IMPRESSION phrase) for one present finding."""
    side, size, zone = d.side, d.size, d.zone
    if name == "pleural effusion":
        if side == "bilateral":
            f = [f"{_cap(size)} bilateral pleural effusions.",
                 f"There are {size} bilateral pleural effusions.",
                 f"Bilateral {size} pleural effusions with blunting of both costophrenic angles.",
                 f"{_cap(size)} pleural effusions on both sides, with meniscus-shaped fluid at both bases."]
            return _choose(rng, f), f"{_cap(size)} bilateral pleural effusions."
        f = [f"There is a {size} {side} pleural effusion.",
             f"{_cap(size)} {side} pleural effusion.",
             f"{_cap(size)} {side} pleural effusion with blunting of the {side} costophrenic angle.",
             f"A {size} amount of {side} pleural fluid is present.",
             f"Blunting of the {side} costophrenic angle with a meniscus, in keeping with a {size} pleural effusion."]
        return _choose(rng, f), f"{_cap(size)} {side} pleural effusion."
    if name == "pneumothorax":
        if side == "bilateral":
            f = [f"{_cap(size)} bilateral pneumothoraces.",
                 f"Bilateral {size} pneumothoraces, with visible pleural lines at both apices."]
            return _choose(rng, f), f"{_cap(size)} bilateral pneumothoraces."
        f = [f"There is a {size} {side} pneumothorax, with a visible pleural line at the {side} apex.",
             f"{_cap(size)} {side} apical pneumothorax.",
             f"{_cap(size)} {side} pneumothorax with a visible visceral pleural line and no lung markings beyond it.",
             f"A {size} {side} pneumothorax is present."]
        return _choose(rng, f), f"{_cap(size)} {side} pneumothorax."
    if name == "consolidation":
        extent = {"small": "focal ", "moderate": "", "large": "extensive "}[size]
        if side == "bilateral":
            f = [f"Bilateral {extent}{zone} lobe consolidation with air bronchograms.",
                 f"There is {extent}consolidation in both {zone} lobes."]
            return _choose(rng, f), f"Bilateral {zone} lobe consolidation."
        lobe, adj = _lobe(side, zone), _lobe_adj(side, zone)
        f = [f"{_cap(extent)}consolidation in the {lobe} with air bronchograms.",
             f"There is {extent or 'dense '}consolidation in the {lobe}.",
             f"{_cap(adj)} {extent}consolidation.",
             f"{_cap(extent)}airspace consolidation in the {lobe}, with air bronchograms.",
             f"{_cap(extent)}airspace disease in the {lobe}."]
        return _choose(rng, f), f"{_cap(adj)} consolidation."
    if name == "atelectasis":
        if side == "bilateral":
            f = ["Bibasilar atelectasis.", "Bilateral basal atelectasis.", "Linear atelectasis at both lung bases.",
                 "Plate-like atelectasis at both bases."]
            return _choose(rng, f), "Bibasilar atelectasis."
        if d.kind == "wedge":
            lobe, adj = _lobe(side, zone), _lobe_adj(side, zone)
            f = [f"{_cap(adj)} collapse with volume loss.",
                 f"Atelectasis of the {lobe} with volume loss and elevation of the {side} hemidiaphragm.",
                 f"Wedge-shaped {adj} atelectasis with volume loss."]
            return _choose(rng, f), f"{_cap(adj)} atelectasis."
        if zone == "lower":
            f = [f"{_cap(side)} basilar atelectasis.",
                 f"Linear atelectasis at the {side} base.",
                 f"Plate-like atelectasis in the {side} lower zone.",
                 f"Subsegmental atelectasis at the {side} lung base."]
            return _choose(rng, f), f"{_cap(side)} basilar atelectasis."
        f = [f"Linear atelectasis in the {side} mid zone.", f"Subsegmental atelectasis in the {side} mid zone.",
             f"Plate-like atelectasis in the {side} mid zone."]
        return _choose(rng, f), f"{_cap(side)} mid zone atelectasis."
    if name == "cardiomegaly":
        adverb = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[size]
        f = ["The heart is enlarged.",
             f"{_cap(size)} cardiomegaly.",
             f"The cardiac silhouette is {adverb} enlarged.",
             "Heart size is enlarged.",
             "Enlarged cardiac silhouette, in keeping with cardiomegaly.",
             "The cardiothoracic ratio is increased, consistent with cardiomegaly.",
             "Cardiomegaly."]
        return _choose(rng, f), _choose(rng, [f"{_cap(size)} cardiomegaly.", "Cardiomegaly."])
    if name == "lung opacity":
        zw = "mid" if zone == "middle" else zone
        if side == "bilateral":
            f = [f"Hazy bilateral {zw} zone opacities.",
                 f"Ill-defined opacities in both {zw} zones.",
                 f"Patchy ill-defined opacification in both {zw} zones."]
            return _choose(rng, f), f"Bilateral {zw} zone opacities."
        f = [f"Hazy opacity in the {side} {zw} zone.",
             f"Ill-defined opacification in the {side} {zw} zone.",
             f"Patchy ill-defined opacities in the {side} {zw} zone.",
             f"Increased haziness in the {side} {zw} zone.",
             f"There is a hazy, ill-defined opacity in the {side} {zw} zone."]
        return _choose(rng, f), f"{_cap(side)} {zw} zone opacity."
    raise AssertionError(name)


def _report(details: Mapping[str, FindingDetail], rng: np.random.Generator) -> Report:
    present = set(details)
    said: dict[str, str] = {}
    impression: list[str] = []
    for name in FINDINGS:
        if name in present:
            sentence, phrase = _sentences(name, details[name], rng)
            said[name] = _cap(sentence)
            impression.append(_cap(phrase))

    parts: list[str] = []
    # heart and mediastinum
    if "cardiomegaly" in present:
        parts.append(said["cardiomegaly"])
    else:
        parts.append(_choose(rng, ["The heart size is normal.", "Heart size is within normal limits.",
                                   "The cardiac silhouette is normal in size.", "Normal heart size.",
                                   "The cardiomediastinal silhouette is within normal limits.",
                                   "The heart is not enlarged."]))
    # lungs
    parenchyma = [n for n in ("consolidation", "atelectasis", "lung opacity") if n in present]
    if not parenchyma:
        parts.append(_choose(rng, ["The lungs are clear.", "Lungs are clear bilaterally.",
                                   "The lungs are well expanded and clear.", "No focal consolidation or opacity."]))
    else:
        atel = details.get("atelectasis")
        joined = False
        if "consolidation" not in present and atel is not None and atel.kind == "linear" and atel.side != "bilateral" \
                and atel.zone == "lower" and rng.random() < 0.4:
            parts.append(f"No focal consolidation, but there is {atel.side} basilar atelectasis.")
            joined = True
        for n in parenchyma:
            if not (joined and n == "atelectasis"):
                parts.append(said[n])
        if "consolidation" not in present and not joined and rng.random() < 0.6:
            parts.append(_choose(rng, ["No focal consolidation.", "No consolidation.", "No airspace consolidation."]))
        if "lung opacity" not in present and rng.random() < 0.3:
            parts.append("No other focal opacity.")
        if "atelectasis" not in present and rng.random() < 0.2:
            parts.append("No atelectasis.")
    # pleura
    effusion, ptx = "pleural effusion" in present, "pneumothorax" in present
    if effusion:
        parts.append(said["pleural effusion"])
    if ptx:
        parts.append(said["pneumothorax"])
    if not effusion and not ptx:
        parts.append(_choose(rng, ["No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax.",
                                   "No effusion or pneumothorax is seen.",
                                   "The costophrenic angles are sharp and there is no pneumothorax."]))
    elif not effusion:
        parts.append(_choose(rng, ["No pleural effusion.", "There is no pleural effusion.", "No evidence of pleural effusion."]))
    elif not ptx:
        parts.append(_choose(rng, ["No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."]))
    # bones
    if rng.random() < 0.5:
        parts.append(_choose(rng, ["No acute osseous abnormality.", "The visualized osseous structures are unremarkable."]))

    if not impression:
        impression_text = _choose(rng, ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.",
                                        "Normal chest radiograph.", "No active disease."])
    elif len(impression) >= 2 and rng.random() < 0.3:
        first, second = impression[0].rstrip("."), impression[1].rstrip(".")
        rest = impression[2:]
        impression_text = " ".join([f"{first} and {second[:1].lower()}{second[1:]}.", *rest])
    else:
        impression_text = " ".join(impression)
    return Report(findings=" ".join(parts), impression=impression_text)


_HISTORY_GENERIC = ("Cough.", "Shortness of breath.", "Chest pain.", "Pre-operative assessment.", "Follow-up.",
                    "Routine check-up.", "Fall, chest wall pain.", "Fever.", "Weight loss.", "Haemoptysis.")
_HISTORY_BY_FINDING = MappingProxyType({
    "pleural effusion": ("Breathlessness, known heart failure.", "Dyspnoea on exertion."),
    "pneumothorax": ("Sudden onset pleuritic chest pain.", "Acute breathlessness after coughing fit."),
    "consolidation": ("Fever and productive cough.", "Fever, raised inflammatory markers."),
    "atelectasis": ("Post-operative day 2, low oxygen saturation.", "Reduced breath sounds at the base."),
    "cardiomegaly": ("Ankle swelling and breathlessness.", "Known hypertension, dyspnoea."),
    "lung opacity": ("Cough and low-grade fever.", "Persistent cough."),
})


def _history(person: _Person, details: Mapping[str, FindingDetail], rng: np.random.Generator) -> str:
    """A line of clinical history: about half the time it hints at one finding that is present,
    never naming it, so a model given the history still has to look at the image."""
    who = f"{person.age}-year-old {'woman' if person.sex == 'F' else 'man'}."
    present = [n for n in FINDINGS if n in details]
    if present and rng.random() < 0.5:
        reason = _choose(rng, _HISTORY_BY_FINDING[_choose(rng, present)])
    else:
        reason = _choose(rng, _HISTORY_GENERIC)
    return f"{who} {reason}"
