"""The public generator: one phantom from a seed, a realistic mix of findings, a reproducible dataset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from PIL import Image

from trial.dicom import dicom_bytes, render_display

from .anatomy import _anatomy
from .dicom_file import _dataset, _person, _to_stored
from .findings import FINDINGS, FindingDetail, _finding_params
from .radiograph import _render
from .report import Report, _history, _report


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
(_STREAM_ANATOMY, _STREAM_NOISE, _STREAM_TEXT, _STREAM_HISTORY, _STREAM_PERSON, _STREAM_FINDING,
 _STREAM_DATASET) = range(7)
