"""DICOMweb STOW-RS (PS3.18 10.5): a hospital system (the site's PACS or router) POSTs chest films to
/dicomweb/studies[/{study}] with its site's sender token. Each instance goes the way a C-STORE goes
(trial.listener.store → trial.services.receive_image), so both wires answer alike; trial.dicomweb takes the body
apart and writes the Store Instances Response.

What a sender is told (PS3.18 10.5.3.1; the per-instance Failure Reasons are the listener's DIMSE statuses):
- 200: every instance stored, or screened out by the trial's rules, or already enrolled (nothing more to send);
- 202: some stored, the others in the Failed SOP Sequence with their reasons; 409: none stored;
- 503 with Retry-After: none stored because the database or the storage is down (every reason A700): send again;
- 400 a broken multipart body; 401 no valid token (WWW-Authenticate: Bearer); 405 anything but POST (this server is
  not a PACS to query); 406 an Accept without application/dicom+json; 411 a chunked body the server cannot read;
  413 a body or a count of instances over the limits; 415 anything but multipart/related of application/dicom;
  429 with Retry-After: the site sent more than settings.CXR_INBOUND_PER_MINUTE requests this minute.
Every request of a known sender is in the audit log ("dicomweb.stow": counts and codes, never a UID or a name).
"""
from __future__ import annotations

import logging
import mmap
import tempfile
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.security import client_address

from . import dicomweb, listener, ratelimit, selectors, services

logger = logging.getLogger(__name__)

SOURCE = "stow-rs"
READ_CHUNK = 1024 * 1024
RETRY_AFTER_SECONDS = 30            # when the database or the storage is down
AUTH_FAILURES_PER_MINUTE = 30       # requests without a valid key from one address, before a 429
SOP_CLASSES = frozenset(str(uid) for uid in listener.STORAGE_CLASSES)  # what the listener negotiates: CR, DX


def _per_minute() -> int:
    return settings.CXR_INBOUND_PER_MINUTE


def _max_instances() -> int:
    return settings.CXR_STOW_MAX_INSTANCES


def _max_bytes() -> int:
    # A few films of the largest size one film may have (a chest study: PA and lateral, and a repeat or two).
    return settings.CXR_STOW_MAX_BYTES


def _refusal(status: int, message: str, **headers) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


class _BodyRefused(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@csrf_exempt  # a token, no cookie: nothing for CSRF to guard, and its middleware must not read the body first
@require_POST
def store_instances(request, study_uid: str | None = None):
    token = _sender(request)
    if isinstance(token, HttpResponse):
        return token
    site = token.site
    limit = ratelimit.hit(f"stow:site:{site.pk}", per_minute=_per_minute())
    if not limit.allowed:
        logger.warning("STOW-RS for site %s refused: over %s requests a minute", site.code, limit.limit)
        if limit.first_refusal:  # once a window: a sender over its limit must not fill the audit log instead
            _audit(site, token, {"http_status": 429, "refused": "rate_limited", "limit_per_minute": limit.limit})
        return _refusal(429, f"More than {limit.limit} requests a minute from this site; send again in "
                             f"{limit.retry_after} s. Nothing was stored.", Retry_After=str(limit.retry_after))
    try:
        services.note_sender_token_use(token=token)
    except DatabaseError:
        pass  # when it was last used is a convenience; the images decide below whether the database is there
    try:
        boundary = dicomweb.boundary_of(request.META.get("CONTENT_TYPE", ""))
        if not dicomweb.accepts_dicom_json(request.META.get("HTTP_ACCEPT", "")):
            raise _BodyRefused(406, "The response is application/dicom+json only: accept it.", "not_acceptable")
        with _body(request) as body:
            parts = dicomweb.split_parts(body, boundary, max_parts=_max_instances())
            results = [_store_part(site=site, body=body, part=part, study_uid=study_uid) for part in parts]
            size = len(body)
    except dicomweb.StowError as exc:
        code = {400: "bad_multipart", 413: "too_many_instances", 415: "unsupported_media_type"}[exc.status]
        _audit(site, token, {"http_status": exc.status, "refused": code})
        return _refusal(exc.status, exc.message + " Nothing was stored.")
    except _BodyRefused as exc:
        _audit(site, token, {"http_status": exc.status, "refused": exc.code})
        return _refusal(exc.status, exc.message + " Nothing was stored.")
    status = dicomweb.http_status(results)
    stored = sum(r.stored for r in results)
    failures = dicomweb.failure_counts(results)
    logger.info("STOW-RS for site %s: %s stored, %s failed %s (HTTP %s)", site.code, stored, len(results) - stored,
                failures or "", status)
    _audit(site, token, {"http_status": status, "instances": len(results), "stored": stored,
                         "failed": len(results) - stored, "failures": failures, "bytes": size})
    # exactly this media type, no charset: clients (dicomweb-client among them) compare it as a whole
    response = JsonResponse(dicomweb.response_body(results), status=status, content_type=dicomweb.DICOM_JSON)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _sender(request):
    """The sender token of the request's `Authorization: Bearer <key>`, or the refusal to answer with."""
    address = client_address(request)
    key = _bearer_key(request)
    try:
        token = selectors.sender_token_for_key(key=key) if key else None
    except DatabaseError:
        logger.warning("STOW-RS from %s not taken: the database is unavailable", address, exc_info=True)
        return _refusal(503, "The service is unavailable; send again later. Nothing was stored.",
                        Retry_After=str(RETRY_AFTER_SECONDS))
    if token is not None:
        return token
    # Not audited: the audit log is the trial's, and an unknown caller has none (and must not fill it). An address
    # that keeps sending wrong keys is told to slow down; a valid key is never held up by it.
    failures = ratelimit.hit(f"stow-auth:{address}", per_minute=AUTH_FAILURES_PER_MINUTE)
    logger.warning("STOW-RS from %s refused: %s", address, "a key not recognised" if key else "no key")
    if not failures.allowed:
        return _refusal(429, "Too many requests without a valid key from this address; try again later.",
                        Retry_After=str(failures.retry_after))
    challenge = 'Bearer realm="dicomweb"' + (', error="invalid_token"' if key else "")
    return _refusal(401, "A sender token is needed: Authorization: Bearer <key> (the site's investigator issues "
                         "one).", WWW_Authenticate=challenge)


def _bearer_key(request) -> str:
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _store_part(*, site, body, part: dicomweb.Part, study_uid: str | None) -> dicomweb.InstanceResult:
    """One part: refused alone where it is not a DICOM file, of another study, of a SOP class the platform does not
    take, or sent to a trial that receives nothing; otherwise stored as the listener stores a C-STORE."""
    if not part.is_dicom:
        logger.info("STOW-RS for site %s: %s", site.code, part.refusal())
        return dicomweb.InstanceResult(None, None, dicomweb.CANNOT_UNDERSTAND)
    data = body[part.start:part.end]
    uids = dicomweb.instance_uids(data)

    def failed(reason: int) -> dicomweb.InstanceResult:
        return dicomweb.InstanceResult(uids.sop_class_uid, uids.sop_instance_uid, reason)

    # An unreadable file goes on to be refused (and logged in the screening log) as the listener refuses one.
    if study_uid is not None and uids.readable and uids.study_instance_uid != study_uid:
        return failed(dicomweb.STUDY_MISMATCH)
    if uids.sop_class_uid is not None and uids.sop_class_uid not in SOP_CLASSES:
        return failed(dicomweb.SOP_CLASS_NOT_SUPPORTED)  # the listener refuses such a class at negotiation
    if site.trial.status not in listener.RECEIVING:
        return failed(dicomweb.NOT_AUTHORIZED)
    try:
        answer = listener.store(site=site, data=data, sop_instance_uid=uids.sop_instance_uid or f"part-{part.index}",
                                source=SOURCE)
    except Exception:  # noqa: BLE001 - one instance's fault must not cost the others their answer
        logger.exception("STOW-RS for site %s: part %s failed", site.code, part.index)
        return failed(dicomweb.PROCESSING_FAILURE)
    if answer.status == listener.SUCCESS:
        return dicomweb.InstanceResult(uids.sop_class_uid, uids.sop_instance_uid)
    return failed(answer.status)


@contextmanager
def _body(request):
    """The request's body, read in chunks up to the limit: bytes while it is small, else an mmap of a temporary file
    (so that a study of large films is never held whole in memory; each part is sliced out as it is stored).
    Django's request.body is not used: it refuses anything over DATA_UPLOAD_MAX_MEMORY_SIZE, a few megabytes."""
    limit = _max_bytes()
    too_large = _BodyRefused(413, f"The body is over {limit / 1e6:.0f} MB: send fewer films at a time.", "too_large")
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise _BodyRefused(400, "The Content-Length is not a number.", "bad_length") from None
        if length > limit:
            raise too_large  # not read at all
        stream = request
    elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # gunicorn de-chunks a body and says so; a server that does not would hand over the chunks' framing
        if not request.META.get("wsgi.input_terminated"):
            raise _BodyRefused(411, "A chunked body cannot be read here: send a Content-Length.", "length_required")
        stream = request.META["wsgi.input"]
    else:
        raise _BodyRefused(400, "The body is empty (no Content-Length): send one DICOM file in each part of a "
                                "multipart/related body.", "empty")
    memory_limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    buffer, spool, total = bytearray(), None, 0
    try:
        while chunk := stream.read(READ_CHUNK):
            total += len(chunk)
            if total > limit:
                raise too_large
            if spool is None and len(buffer) + len(chunk) > memory_limit:
                spool = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
                spool.write(buffer)
                buffer = bytearray()
            if spool is None:
                buffer += chunk
            else:
                spool.write(chunk)
        if spool is None:
            yield bytes(buffer)
            return
        spool.flush()
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped
    finally:
        if spool is not None:
            spool.close()


def _audit(site, token, payload: dict) -> None:
    """The request in the audit log once its instances are done (each image was audited as it was enrolled or
    screened out)."""
    listener.audit_inbound(site, "dicomweb.stow", {"token": token.prefix, **payload})
