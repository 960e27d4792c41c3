"""Render a radiograph through lookup tables: the 8-bit display image, its thumbnail and the values image; no Django."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from .attributes import _text, _value
from .validate import MAX_PIXELS, check_pixel_count

WindowSource = Literal["file VOI LUT", "file window", "auto percentile"]


@dataclass(frozen=True)
class RenderedImage:
    """The 8-bit display image (and its thumbnail) that readers and the AI model see."""

    png: bytes
    thumbnail_png: bytes
    width: int
    height: int
    window_center: float  # in modality units (after Rescale Slope/Intercept)
    window_width: float
    source: WindowSource


_AUTO_PERCENTILES: Final = (0.5, 99.5)


def render_display(
    ds: Dataset,
    *,
    max_side: int = 2048,
    thumb_side: int = 256,
    window: Literal["file", "auto"] = "file",
    max_pixels: int = MAX_PIXELS,
) -> RenderedImage:
    """Render the greyscale display PNG: modality LUT, VOI (the file's LUT or window, else a robust
    percentile window), MONOCHROME1 inversion, 8 bits, long side at most `max_side`.

    `window="auto"` ignores the file's VOI: some CR units store a window that looks flat.
    Pass the dataset read_radiograph returned: its decoded pixels are cached there.  An image
    declaring more than `max_pixels` is refused (DicomRejection) before its pixels are touched.
    """
    if max_side < 1 or thumb_side < 1:
        raise ValueError("max_side and thumb_side must be positive")
    arr = _frame(ds, max_pixels)
    lut, center, width, source = _display_lut(ds, arr, window)
    # Every step runs on the lookup table (at most 65,536 entries), never on the full image: the
    # image itself is touched once, by this gather, and stays 8-bit from here on.
    pixels = lut[_lut_index(arr)]

    image = Image.fromarray(pixels)  # 2-D uint8: mode "L"
    if max(image.size) > max_side:
        image = image.resize(_fit(image.size, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    thumb = image.resize(_fit(image.size, thumb_side), Image.Resampling.LANCZOS, reducing_gap=2.0) \
        if max(image.size) > thumb_side else image
    return RenderedImage(
        png=_png(image, fast=True),
        thumbnail_png=_png(thumb, fast=False),
        width=image.width,
        height=image.height,
        window_center=float(center),
        window_width=float(width),
        source=source,
    )


@dataclass(frozen=True)
class ValuesImage:
    """What the viewer needs for a real window/level: the image's values at display size, 16 bits packed
    into the red (high byte) and green (low byte) channels of an RGB PNG, higher = brighter (MONOCHROME1
    already inverted), and window presets in those units ([center, width], or None)."""

    png: bytes
    width: int
    height: int
    windows: dict[str, list[float] | None]


# Presets for radiographs, whose values have no physical unit (unlike CT's Hounsfield units): positions
# and widths as fractions of the auto window (lo..hi), lungs being the dark part of a chest film.
_PRESETS: Final = {"lung": (0.35, 0.70), "mediastinum": (0.70, 0.50), "bone": (0.80, 0.30)}


def render_values(ds: Dataset, *, max_side: int = 2048, max_pixels: int = MAX_PIXELS) -> ValuesImage:
    """The modality values at the display image's size (same resize) for the browser's window/level.

    It holds the image more than once as 32-bit floats (at 5,000 × 5,000, about 150 MB above the decoded
    image), so an image declaring more than `max_pixels` is refused (DicomRejection) before its pixels are
    touched.
    """
    arr = _frame(ds, max_pixels)
    domain = _lut_domain(arr)
    modality = np.asarray(apply_modality_lut(domain, ds), dtype=np.float64)
    padding = _padding_mask(ds, domain)
    hist = _histogram(arr, padding)
    present = hist > 0
    if not present.any():
        present = ~padding if (~padding).any() else np.ones(domain.size, dtype=bool)
    m_min, m_max = float(modality[present].min()), float(modality[present].max())
    scale = 65535.0 / max(m_max - m_min, 1e-9)
    inverted = _inverted(ds)
    # One table from stored value to viewer value; the image itself is touched once, by the gather.
    to_view = (m_max - modality) if inverted else (modality - m_min)
    lut = np.clip(np.rint(to_view * scale), 0, 65535).astype(np.float32)
    lut[padding] = 0.0
    values = Image.fromarray(lut[_lut_index(arr)], mode="F")
    if max(values.size) > max_side:
        values = values.resize(_fit(values.size, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    v = np.clip(np.rint(np.asarray(values)), 0, 65535).astype(np.uint16)
    rgb = np.zeros((*v.shape, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = v >> 8, v & 0xFF
    # The low byte is mostly noise: Huffman coding alone is as small as level 1 and a third faster.
    png = _png(Image.fromarray(rgb, mode="RGB"), fast=True)

    def in_view_units(center: float, width: float) -> list[float]:
        c = (m_max - center) if inverted else (center - m_min)
        return [round(c * scale, 3), round(width * scale, 3)]

    low, high = _percentiles(modality, hist)
    auto = in_view_units((low + high) / 2, high - low)
    lo, span = auto[0] - auto[1] / 2, auto[1]
    windows: dict[str, list[float] | None] = {"auto": auto, "file": None}
    file_window = _file_window(ds)
    if file_window is not None:
        windows["file"] = in_view_units(*file_window)
    for name, (position, width) in _PRESETS.items():
        windows[name] = [round(lo + position * span, 3), round(width * span, 3)]
    return ValuesImage(png=png, width=int(v.shape[1]), height=int(v.shape[0]), windows=windows)


def _frame(ds: Dataset, max_pixels: int) -> np.ndarray:
    """The image's one greyscale frame (decoded once: read_radiograph leaves it cached on the dataset)."""
    check_pixel_count(ds, max_pixels)  # before pixel_array, which decodes a dataset not read by read_radiograph
    arr = ds.pixel_array
    if arr.ndim != 2:
        raise ValueError(f"expected one greyscale frame, got an array of shape {arr.shape}")
    if not arr.dtype.isnative:
        # Explicit VR Big Endian decodes to a big-endian array (">u2"): the lookup tables index native integers
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _histogram(arr: np.ndarray, padding: np.ndarray) -> np.ndarray:
    """How often each stored value occurs, padding left out, indexed as _lut_domain orders the values."""
    # Every other row and column: a quarter of the work, the same percentiles.
    hist = np.bincount(_lut_index(arr)[::2, ::2].ravel(), minlength=padding.size)
    hist[padding] = 0
    return hist


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    w, h = size
    scale = side / max(w, h)
    if scale >= 1:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _png(image: Image.Image, *, fast: bool) -> bytes:
    buf = io.BytesIO()
    if fast:
        # Quantum noise leaves LZ77 little to match in a radiograph: Huffman coding alone makes a
        # smaller file than level 1 (RG1: 1.23 vs 1.57 MB) in less time (0.14 vs 0.16 s; level 6
        # takes 0.8 s).
        image.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY)
    else:
        image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _lut_domain(arr: np.ndarray) -> np.ndarray:
    """Every stored value the array's dtype can hold, in the order _lut_index addresses them."""
    if arr.dtype == np.uint8:
        return np.arange(256, dtype=np.uint8)
    if arr.dtype == np.int8:
        return np.arange(256, dtype=np.uint8).view(np.int8)
    if arr.dtype == np.uint16:
        return np.arange(65536, dtype=np.uint16)
    if arr.dtype == np.int16:
        return np.arange(65536, dtype=np.uint16).view(np.int16)
    raise ValueError(f"pixel arrays of type {arr.dtype} are not rendered (8 or 16 bits expected)")


def _lut_index(arr: np.ndarray) -> np.ndarray:
    # Signed values are addressed through their two's-complement bit pattern: no copy.
    if arr.dtype == np.int8:
        return arr.view(np.uint8)
    if arr.dtype == np.int16:
        return arr.view(np.uint16)
    return arr


def _display_lut(
    ds: Dataset, arr: np.ndarray, window: Literal["file", "auto"]
) -> tuple[np.ndarray, float, float, WindowSource]:
    """Stored value → 8-bit display value, for every possible stored value."""
    domain = _lut_domain(arr)
    modality = apply_modality_lut(domain, ds)
    padding = _padding_mask(ds, domain)
    hist = _histogram(arr, padding)
    low, high = _percentiles(modality, hist)

    y: np.ndarray | None = None
    source: WindowSource = "auto percentile"
    center, width = (low + high) / 2, high - low
    if window == "file" and "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        y, center, width = _voi_lut(ds, modality)
        source = "file VOI LUT"
    elif window == "file":
        file_window = _file_window(ds)
        if file_window is not None:
            c, w = file_window
            # A stored window that misses the image entirely would render it blank: auto instead.
            if c - w / 2 < high and c + w / 2 > low:
                y = _apply_window(modality, c, w, _text(ds, "VOILUTFunction").upper() or "LINEAR")
                center, width, source = c, w, "file window"
    if y is None:
        y = np.clip((modality - low) / (high - low), 0.0, 1.0)

    if _inverted(ds):
        y = 1.0 - y
    lut = np.rint(y * 255.0).astype(np.uint8)
    lut[padding] = 0  # padding is "no image": black, whatever the polarity
    return lut, center, width, source


def _padding_mask(ds: Dataset, domain: np.ndarray) -> np.ndarray:
    mask = np.zeros(domain.size, dtype=bool)
    value = _pixel_value(ds, "PixelPaddingValue")
    if value is None:
        return mask
    limit = _pixel_value(ds, "PixelPaddingRangeLimit")
    low, high = (value, value) if limit is None else sorted((value, limit))
    mask[(domain >= low) & (domain <= high)] = True
    return mask


def _pixel_value(ds: Dataset, keyword: str) -> int | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        value = int(value[0] if isinstance(value, (list, MultiValue)) else value)
    except (TypeError, ValueError, IndexError):
        return None
    # US/SS is ambiguous in the dictionary: read a signed image's padding as signed
    if int(_value(ds, "PixelRepresentation") or 0) == 1 and value > 32767:
        value -= 65536
    return value


def _percentiles(modality: np.ndarray, hist: np.ndarray) -> tuple[float, float]:
    order = np.argsort(modality, kind="stable")
    values = np.asarray(modality, dtype=np.float64)[order]
    cumulative = np.cumsum(hist[order])
    total = cumulative[-1]
    if total == 0:  # nothing but padding: any window will do
        return float(values[0]), max(float(values[-1]), float(values[0]) + 1.0)
    lo_q, hi_q = _AUTO_PERCENTILES
    low = float(values[np.searchsorted(cumulative, total * lo_q / 100.0, side="right")])
    high = float(values[min(np.searchsorted(cumulative, total * hi_q / 100.0, side="left"), values.size - 1)])
    if high <= low:
        high = low + 1.0
    return low, high


def _file_window(ds: Dataset) -> tuple[float, float] | None:
    center, width = _value(ds, "WindowCenter"), _value(ds, "WindowWidth")
    if center in (None, "") or width in (None, ""):
        return None
    try:
        c = float(center[0] if isinstance(center, MultiValue) else center)
        w = float(width[0] if isinstance(width, MultiValue) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w >= 1 else None


def _apply_window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing, scaled to 0..1."""
    x = np.asarray(x, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    # LINEAR (the default): the DICOM formula with its half-unit offsets
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0) if w > 1 else (x > c - 0.5).astype(np.float64)


def _voi_lut(ds: Dataset, modality: np.ndarray) -> tuple[np.ndarray, float, float]:
    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 65536
    first = int(item.LUTDescriptor[1])
    if int(_value(ds, "PixelRepresentation") or 0) == 1 and first > 32767:
        first -= 65536
    # the LUT is indexed by integers; rescaled values are rounded to the nearest one
    index = modality if np.issubdtype(modality.dtype, np.integer) else np.rint(modality).astype(np.int64)
    out = apply_voi_lut(index, ds, index=0, prefer_lut=True).astype(np.float64)
    # the LUT's own output range, read through pydicom (LUT Data may be US or OW, either endian)
    entries_out = apply_voi_lut(np.arange(first, first + entries, dtype=np.int64), ds, index=0, prefer_lut=True)
    lo, hi = float(entries_out.min()), float(entries_out.max())
    y = np.clip((out - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(out)
    # report the input range the LUT covers, as the equivalent window
    return y, first + entries / 2.0, float(entries)


def _inverted(ds: Dataset) -> bool:
    # MONOCHROME1 means "higher is darker".  DX files declare the same thing again with
    # Presentation LUT Shape INVERSE (PS3.3 C.8.11.3): one inversion, not two.  INVERSE on a
    # MONOCHROME2 image does ask for inversion.
    return (
        _text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1"
        or _text(ds, "PresentationLUTShape").upper() == "INVERSE"
    )
