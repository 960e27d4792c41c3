"""The image size a compressed codestream declares for itself (JPEG 2000 SIZ, JPEG SOF, RLE header), read
without decoding, so that a file whose codestream says more than its DICOM header is refused first; no Django."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final


class CodestreamError(ValueError):
    """The codestream's header is missing or cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class CodestreamSize:
    """What a JPEG or JPEG 2000 decoder will allocate for: the image size, the components and (JPEG 2000) tiles."""

    rows: int
    columns: int
    components: int
    tiles: int = 1
    precision: int = 0  # bits per sample, from a JPEG frame header (0: not read)


# A JPEG 2000 file (JP2) wraps the codestream in boxes; DICOM asks for the bare codestream but some
# encoders write the wrapper, and the decoders accept it.
_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_SOC_SIZ: Final = b"\xff\x4f\xff\x51"


def jpeg2000_size(data: bytes) -> CodestreamSize:
    """The image and tile grid of a JPEG 2000 (or HTJ2K) codestream's SIZ marker segment (ISO/IEC 15444-1 A.5.1)."""
    if data.startswith(_JP2_SIGNATURE):
        data = _jp2_codestream(data)
    if not data.startswith(_SOC_SIZ):
        raise CodestreamError("it does not start with a JPEG 2000 SOC and SIZ marker")
    if len(data) < 4 + 38:
        raise CodestreamError("the JPEG 2000 SIZ marker segment is cut short")
    (xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz, csiz) = struct.unpack(">8IH", data[8:42])
    width, height = xsiz - xosiz, ysiz - yosiz
    if width <= 0 or height <= 0 or xtsiz == 0 or ytsiz == 0 or xtosiz > xosiz or ytosiz > yosiz:
        raise CodestreamError(f"the JPEG 2000 SIZ marker declares an impossible image ({xsiz} × {ysiz})")
    tiles = _ceil_div(xsiz - xtosiz, xtsiz) * _ceil_div(ysiz - ytosiz, ytsiz)
    return CodestreamSize(rows=height, columns=width, components=csiz, tiles=tiles)


def _jp2_codestream(data: bytes) -> bytes:
    """The contents of the first Contiguous Codestream box ('jp2c') of a JP2 file (ISO/IEC 15444-1 I.4)."""
    position = 0
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if length == 1:  # the length follows as 8 bytes
            if position + 16 > len(data):
                break
            length = struct.unpack(">Q", data[position + 8:position + 16])[0]
            header = 16
        elif length == 0:  # the box runs to the end of the file
            length = len(data) - position
        if kind == b"jp2c":
            return data[position + header:position + length]
        if length < header:
            break
        position += length
    raise CodestreamError("the JP2 file holds no codestream box in its first fragment")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# Start Of Frame markers (ITU-T T.81 B.1.1.3: C0–C3, C5–C7, C9–CB, CD–CF) and JPEG-LS's SOF55 (T.87).
_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length follows
_SOS: Final = 0xDA


def jpeg_size(data: bytes) -> CodestreamSize:
    """The frame size of a JPEG (baseline, extended, lossless) or JPEG-LS codestream's SOF marker segment."""
    if not data.startswith(b"\xff\xd8"):
        raise CodestreamError("it does not start with a JPEG SOI marker")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise CodestreamError("a JPEG marker was expected before the frame header")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        if marker == _SOS:
            break
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _SOF:
            if length < 8 or position + 10 > len(data):
                raise CodestreamError("the JPEG frame header is cut short")
            precision, lines, samples, components = struct.unpack(">BHHB", data[position + 4:position + 10])
            if lines == 0:
                # the height would come later, in a DNL marker: nothing to check it against before decoding
                raise CodestreamError("the JPEG frame header leaves the number of lines to a DNL marker")
            return CodestreamSize(rows=lines, columns=samples, components=components, precision=precision)
        if length < 2:
            raise CodestreamError("a JPEG marker segment has an impossible length")
        position += 2 + length
    raise CodestreamError("no JPEG frame header (SOF marker) before the image data")


@dataclass(frozen=True)
class RleHeader:
    """The RLE header (PS3.5 G.5): how many segments (one per byte of each sample) and their lengths in bytes."""

    segment_lengths: tuple[int, ...]


def rle_header(first_fragment: bytes, total_length: int) -> RleHeader:
    """Read the 64-byte RLE header of a frame; `total_length` is the frame's length over all its fragments."""
    if len(first_fragment) < 64:
        raise CodestreamError("the RLE header (64 bytes) is cut short")
    count, *offsets = struct.unpack("<16I", first_fragment[:64])
    if not 1 <= count <= 15:
        raise CodestreamError(f"the RLE header declares {count} segments (1 to 15 are possible)")
    offsets = offsets[:count]
    ends = [*offsets[1:], total_length]
    if offsets[0] != 64 or any(end < start for start, end in zip(offsets, ends)):
        raise CodestreamError("the RLE segment offsets are out of order or outside the frame")
    return RleHeader(segment_lengths=tuple(end - start for start, end in zip(offsets, ends)))


# A replicate run (PS3.5 G.3.1) turns two bytes into at most 128: no segment decodes to more than 64
# times its own length.
RLE_MAX_EXPANSION: Final = 64
