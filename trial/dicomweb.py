"""DICOMweb STOW-RS (PS3.18 10.5) without Django: a request's multipart/related body taken apart into its parts, the
UIDs an instance names, and the answer: the Store Instances Response Module (PS3.18 Annex I) in the DICOM JSON model
(PS3.18 Annex F) with the HTTP status the standard gives it (PS3.18 10.5.3.1, Table 10.5.3-1).

A body may be bytes or an mmap of a spooled file: the parser only finds and slices, so a large body is never copied
whole; each part is sliced out when it is stored.
"""
from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"

# Failure Reason (0008,1197) values, PS3.18 I.2.2 Table I.2-2 (the DIMSE C-STORE codes of PS3.4 B.2.3), and the
# implementation-specific ones this server adds (the table allows them; they are named in its conformance notes).
OUT_OF_RESOURCES = 0xA700            # A7xx: retry later
CANNOT_UNDERSTAND = 0xC000           # Cxxx: not a usable file, or a part that is not application/dicom
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124              # PS3.7 C.4: the trial or the site is not enrolling (as the DICOM listener says)
# An instance of another study than the one in the URL (studies/{study}): PS3.18 10.5.3.1 names the case ("Study
# Instance UID mismatch") but Table I.2-2 gives it no code; 0xC409 is the one dcm4chee-arc uses, in the Cxxx range.
STUDY_MISMATCH = 0xC409

# RFC 2046 5.1.1: a boundary is 1 to 70 characters of this set, not ending with a space. Orthanc's DICOMweb plugin
# sends 73 (two UUIDs): a boundary is read up to 200 characters, since refusing a longer one refuses a real PACS.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# The header block of one part: a few short lines. A part whose blank line is not found this early has none.
MAX_PART_HEADER_BYTES = 16 * 1024


class StowError(ValueError):
    """A request refused as a whole, before any instance is looked at; `status` is its HTTP status."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(StowError):
    """A body that is not well-formed multipart (PS3.18 Table 10.5.3-1: 400, "bad syntax")."""


class UnsupportedMediaType(StowError):
    """A request that is not multipart/related of application/dicom (PS3.18 Table 10.5.3-1: 415)."""

    status = 415


class TooManyParts(StowError):
    status = 413


# ------------------------------------------------------------------------------------------ media types


@dataclass(frozen=True)
class MediaType:
    type: str                                   # lower case, "type/subtype"
    params: dict[str, str] = field(default_factory=dict)   # names in lower case; values unquoted

    def __str__(self) -> str:
        return self.type


def parse_media_type(value: str) -> MediaType:
    """RFC 9110 8.3.1 `type/subtype *(; name=value)`, a value a token or a quoted string (which may hold ';');
    ValueError when the type itself is malformed. A malformed parameter is dropped, as browsers and servers do."""
    text = value.strip()
    head, _, rest = text.partition(";")
    media = head.strip().lower()
    main, slash, sub = media.partition("/")
    if not slash or not _TOKEN.fullmatch(main) or not _TOKEN.fullmatch(sub):
        raise ValueError(f"not a media type: {head.strip()!r}")
    return MediaType(media, _parameters(rest))


def _parameters(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip().lower()
        if j >= n or text[j] == ";":  # a name without a value
            i = j
            continue
        j += 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == '"':
            chars, j = [], j + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            value = "".join(chars)
            j = text.find(";", j)  # whatever follows the closing quote up to the next ';' is ignored
            j = n if j < 0 else j
        else:
            k = text.find(";", j)
            k = n if k < 0 else k
            value, j = text[j:k].strip(), k
        if name and _TOKEN.fullmatch(name):
            params.setdefault(name, value)  # the first of a repeated parameter counts
        i = j
    return params


def boundary_of(content_type: str) -> str:
    """The boundary of a STOW-RS request whose Content-Type is `content_type`.

    PS3.18 10.5.1: `multipart/related; type="application/dicom"; boundary=…` (type quoted or not). A multipart/related
    body that names no type is taken too: each part names its own, and one that is not application/dicom is refused
    alone. Metadata and bulk data (type application/dicom+json or +xml) are not accepted: this server takes PS3.10
    files only. UnsupportedMediaType or BadRequest (no boundary, or one RFC 2046 does not allow) otherwise."""
    if not content_type.strip():
        raise UnsupportedMediaType('The request has no Content-Type: send multipart/related; '
                                   'type="application/dicom" with one DICOM file (PS3.10) in each part.')
    try:
        media = parse_media_type(content_type)
    except ValueError:
        raise UnsupportedMediaType(f"Content-Type {content_type.strip()[:100]!r} is not a media type.") from None
    if media.type != "multipart/related":
        raise UnsupportedMediaType(f'{media.type} is not accepted: send multipart/related; type="application/dicom" '
                                   "with one DICOM file (PS3.10) in each part.")
    kind = media.params.get("type", DICOM).split(";")[0].strip().lower()
    if kind != DICOM:
        raise UnsupportedMediaType(f"multipart/related of {kind[:100]} is not accepted: this server stores DICOM "
                                   'files (PS3.10) only, type="application/dicom", not metadata and bulk data.')
    boundary = media.params.get("boundary", "")
    if not boundary:
        raise BadRequest("The Content-Type names no boundary: the body's parts cannot be found.")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadRequest("The Content-Type's boundary is not a valid multipart boundary (RFC 2046: 1 to 70 "
                         "characters, letters, digits and '()+_,-./:=? ).")
    return boundary


def accepts_dicom_json(accept: str) -> bool:
    """Whether a response in application/dicom+json is acceptable to a client that sent `accept` (none: yes). The
    response is the one representation this server writes; application/json is taken as asking for it too."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        try:
            media = parse_media_type(item)
        except ValueError:
            continue
        try:
            q = float(media.params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0 and media.type in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return True
    return False


# ------------------------------------------------------------------------------------------ the body's parts


@dataclass(frozen=True)
class Part:
    """One part of the body: its headers, its media type, and where its content lies in the body."""

    index: int                  # 1, 2, … in the body's order
    headers: dict[str, str]     # names in lower case
    media_type: MediaType | None  # None where its Content-Type cannot be read
    start: int
    end: int
    problem: str = ""           # why the part cannot be used, where it cannot ("" when it can)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def is_dicom(self) -> bool:
        return not self.problem and self.media_type is not None and self.media_type.type == DICOM

    def refusal(self) -> str:
        """Why this part is not stored as a DICOM file ("" when it may be)."""
        if self.problem:
            return self.problem
        if self.media_type is None:
            return f"Part {self.index}: its Content-Type cannot be read."
        if self.media_type.type != DICOM:
            return f"Part {self.index} is {self.media_type.type}, not application/dicom."
        return ""


def split_parts(body, boundary: str, *, max_parts: int | None = None) -> list[Part]:
    """The parts of a multipart body (RFC 2046 5.1.1), `body` being bytes or an mmap.

    Lenient where senders differ and nothing is lost: a preamble and an epilogue are ignored; line breaks may be CRLF
    or a bare LF; transport padding (spaces, tabs) after a delimiter is skipped; the close delimiter needs no line
    break after it; a part with no Content-Type is taken as application/dicom (the request's type). Strict where a
    body is broken: no delimiter, no close delimiter (a truncated upload) or no part at all is BadRequest; more than
    `max_parts` parts is TooManyParts. A part whose own headers are unreadable is returned with its `problem`, to be
    refused alone."""
    if not len(body):
        raise BadRequest("The body is empty: send one DICOM file in each part of a multipart/related body.")
    dash = b"--" + boundary.encode("ascii")
    if body[:len(dash)] == dash and _ends_delimiter(body, len(dash)):
        pos = 0  # the body begins with its first delimiter: no preamble
    else:
        pos = _next_delimiter(body, dash, 0) + 1
        if pos == 0:
            raise BadRequest("The body has no part: its boundary does not occur in it.")
    parts: list[Part] = []
    while True:
        after = pos + len(dash)
        if body[after:after + 2] == b"--":
            break  # the close delimiter; what follows is an epilogue
        start = _line_end(body, after)
        # from the line break that ended the delimiter: a part with nothing in it is still found
        newline = _next_delimiter(body, dash, start - 1) if start is not None else -1
        if newline < 0:
            raise BadRequest("The body ends without its close delimiter (--boundary--): it was cut short.")
        end = max(start, newline - 1 if body[newline - 1:newline] == b"\r" else newline)
        if max_parts is not None and len(parts) >= max_parts:
            raise TooManyParts(f"More than {max_parts} instances in one request: send them in several.")
        parts.append(_part(body, len(parts) + 1, start, end))
        pos = newline + 1
    if not parts:
        raise BadRequest("The body has no part: only its close delimiter.")
    return parts


def _next_delimiter(body, dash: bytes, start: int) -> int:
    """The index of the line feed that begins the next delimiter line at or after `start`, -1 if there is none. A
    "--boundary" followed by anything but "--", padding or a line break is not a delimiter (only the beginning of a
    longer line), and the search goes on."""
    needle = b"\n" + dash
    i = start
    while (i := body.find(needle, i)) >= 0:
        if _ends_delimiter(body, i + len(needle)):
            return i
        i += 1
    return -1


def _ends_delimiter(body, at: int) -> bool:
    nxt = body[at:at + 2]
    return nxt == b"" or nxt == b"--" or nxt[:1] in (b" ", b"\t", b"\r", b"\n")


def _line_end(body, at: int) -> int | None:
    """After a delimiter: skip transport padding, then one line break; where the part begins, or None at the end."""
    i = at
    while body[i:i + 1] in (b" ", b"\t"):
        i += 1
    if body[i:i + 2] == b"\r\n":
        return i + 2
    if body[i:i + 1] == b"\n":
        return i + 1
    return None


def _part(body, index: int, start: int, end: int) -> Part:
    # No headers at all: the part begins with its blank line.
    if body[start:start + 2] == b"\r\n":
        return Part(index, {}, MediaType(DICOM), start + 2, end)
    if body[start:start + 1] == b"\n":
        return Part(index, {}, MediaType(DICOM), start + 1, end)
    limit = min(end, start + MAX_PART_HEADER_BYTES)
    crlf, lf = body.find(b"\r\n\r\n", start, limit), body.find(b"\n\n", start, limit)
    ends = [(i, i + 4) for i in (crlf,) if i >= 0] + [(i, i + 2) for i in (lf,) if i >= 0]
    if not ends:
        return Part(index, {}, None, start, end, f"Part {index} has no blank line after its headers.")
    header_end, content_start = min(ends)
    headers = _headers(bytes(body[start:header_end]))
    problem = ""
    try:
        media = parse_media_type(headers["content-type"]) if "content-type" in headers else MediaType(DICOM)
    except ValueError:
        media = None
    encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
    if encoding not in ("binary", "8bit", "7bit"):
        problem = f"Part {index} is sent in {encoding[:40]} transfer encoding; only binary is accepted."
    return Part(index, headers, media, content_start, end, problem)


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for line in block.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and name:  # a folded line continues the one before
            headers[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if colon and key.strip():
            name = key.strip().lower()
            headers.setdefault(name, value.strip())
    return headers


# ------------------------------------------------------------------------------------------ an instance's UIDs


@dataclass(frozen=True)
class InstanceUIDs:
    """What a PS3.10 file says it is, read from its header; None where it cannot be read."""

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None

    @property
    def readable(self) -> bool:
        return self.sop_instance_uid is not None


def instance_uids(data: bytes) -> InstanceUIDs:
    """The SOP Class, SOP Instance and Study Instance UIDs of one file, from its header only (the pixels are not
    read). A value that is not a UID is taken as absent: whatever a corrupt file holds is never echoed back."""
    import pydicom  # here: the parser above needs no DICOM library
    from pydicom.errors import InvalidDicomError

    raw = bytes(128) + data if data[:4] == b"DICM" else data  # a preamble dropped by a forwarder, as trial.dicom does
    tags = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=tags)
            except InvalidDicomError:  # no preamble: a bare data set, read as one if it parses
                ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=tags, force=True)
            values = [_uid(ds.get(tag)) for tag in tags]
            if values[1] is None and getattr(ds, "file_meta", None) is not None:
                values[1] = _uid(ds.file_meta.get("MediaStorageSOPInstanceUID"))
                values[0] = values[0] or _uid(ds.file_meta.get("MediaStorageSOPClassUID"))
    except Exception:  # noqa: BLE001 - a file pydicom cannot read has no UIDs; storing it will say why
        return InstanceUIDs()
    return InstanceUIDs(*values)


def _uid(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip().rstrip("\x00").strip()
    return text if 0 < len(text) <= 64 and _UID.fullmatch(text) else None


# ------------------------------------------------------------------------------------------ the response


@dataclass(frozen=True)
class InstanceResult:
    """What became of one instance: stored (failure_reason None) or not, with its PS3.18 I.2.2 Failure Reason."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure_reason: int | None = None

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


def _is_out_of_resources(reason: int | None) -> bool:
    return reason is not None and 0xA700 <= reason <= 0xA7FF


def http_status(results: Sequence[InstanceResult]) -> int:
    """PS3.18 10.5.3.1 (Table 10.5.3-1): 200 when every instance was stored, 202 when some were, 409 when none was
    (a conflict, or "a mixture of reasons"). When none was and every failure is "out of resources" (the database or
    the storage down), 503 Service Unavailable instead (PS3.18 8.5 takes HTTP's status codes; the sender retries
    later, as a PACS retries a C-STORE answered A700)."""
    if not results:
        raise ValueError("no instance")
    stored = sum(r.stored for r in results)
    if stored == len(results):
        return 200
    if stored:
        return 202
    if all(_is_out_of_resources(r.failure_reason) for r in results):
        return 503
    return 409


def _element(vr: str, values: Iterable | None = None) -> dict:
    values = list(values or [])
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _reference(result: InstanceResult) -> dict:
    # SOP Instance Reference Macro (PS3.3 Table 10-11). A part that could not be read has no UIDs to give; they are
    # left out rather than made up (a made-up UID could match another instance at the sender).
    item: dict = {}
    if result.sop_class_uid:
        item["00081150"] = _element("UI", [result.sop_class_uid])
    if result.sop_instance_uid:
        item["00081155"] = _element("UI", [result.sop_instance_uid])
    return item


def response_body(results: Sequence[InstanceResult]) -> dict:
    """The Store Instances Response Module (PS3.18 Table I.1-1) as DICOM JSON (PS3.18 F.2): Retrieve URL (type 2:
    present and empty, this server offers no retrieval), Failed SOP Sequence when an instance failed, each item with
    its Failure Reason (US), and Referenced SOP Sequence when one was stored, each item with an empty Retrieve URL.
    Keys in tag order, as F.2 asks."""
    failed = [{**_reference(r), "00081197": _element("US", [r.failure_reason])} for r in results if not r.stored]
    stored = [{**_reference(r), "00081190": _element("UR")} for r in results if r.stored]
    body: dict = {"00081190": _element("UR")}
    if failed:
        body["00081198"] = _element("SQ", failed)
    if stored:
        body["00081199"] = _element("SQ", stored)
    return body


def failure_counts(results: Iterable[InstanceResult]) -> dict[str, int]:
    """How many instances failed with each reason, by its code in hexadecimal (for logs and the audit log)."""
    counts: dict[str, int] = {}
    for r in results:
        if not r.stored:
            code = f"{r.failure_reason:04X}"
            counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))
