"""The DICOM listener: a pynetdicom Storage SCP through which a hospital's PACS (or a modality) sends chest films to
the platform, and every image goes the way an upload goes (trial.services.receive_image: eligibility, then
enrolment or the screening log).

Who may call: the calling AE titles (and, optionally, host addresses) that the investigators named for the sites of
trials receiving images (Site.dicom_ae_titles, dicom_hosts; trial.services.set_site_dicom_senders). Any other
caller is refused at association (A-ASSOCIATE-RJ, "calling AE title not recognised"); a known title calling from a
host its site does not list is aborted at once. The allow-list is read from the database as each association is
negotiated, so a site added or changed needs no restart.

What the sender is told (the DIMSE status of each C-STORE, with the reason in Error Comment):
- 0x0000 Success: the case is stored (or the image joined its study's case, or waits for the study's frontal image),
  or the image is screened out by the trial's rules, or it is already enrolled (a PACS retry): it needs nothing more,
  and a retry would change nothing;
- 0x0124 Refused, not authorized: the trial or the site is not enrolling (paused, closed, target reached);
- 0xC000 Error, cannot understand: the file is not a usable chest radiograph (trial.dicom's refusal codes);
- 0xA700 Out of resources: the database or the storage is down, or the site sent more than CXR_INBOUND_PER_MINUTE
  images this minute — the PACS retries later; nothing half-written remains (the enrolment is one transaction, and
  its files are removed when it fails);
- 0x0110 Processing failure: anything else (logged with its traceback).

In the audit log (as STOW-RS requests are): each association of a known sender that sent images, when it ends
("dicom.association": how many images, stored, failed by status code; never a UID or a name), and a known title
refused for its host ("dicom.refused", once a minute per site and address). Each image is audited besides, as it is
enrolled or screened out. An unknown caller is logged, not audited: the audit log is the trials', it has none, and
a stranger knocking must not fill it. Associations that only echo (a PACS checking the link) are not audited.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, transaction
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)

from core.db import close_thread_connections
from core.errors import ServiceError, WrongStatus

from . import audit, dicom, ratelimit, services, tls
from .errors import CaseRejected, DuplicateImage, FileTooLarge, NotEnrolled
from .models import Site, Status

logger = logging.getLogger(__name__)

STORAGE_CLASSES = (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                   DigitalXRayImageStorageForProcessing)
SUCCESS, NOT_AUTHORIZED, CANNOT_UNDERSTAND, OUT_OF_RESOURCES, PROCESSING_FAILURE = (
    0x0000, 0x0124, 0xC000, 0xA700, 0x0110)
# Error Comment is a Long String: 64 characters.
COMMENT_LIMIT = 64
# What a calling AE title may be matched against when no site names any sender: nothing (a backslash is not allowed
# in an AE title, so no caller has this one; an empty list would let pynetdicom accept every caller).
NOBODY = "\\nobody"
RECEIVING = (Status.ENROLLING, Status.OPEN, Status.PAUSED, Status.CLOSED)


@dataclass(frozen=True)
class Answer:
    status: int
    comment: str = ""

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.Status = self.status
        if self.comment:
            ds.ErrorComment = self.comment[:COMMENT_LIMIT]
        return ds


def audit_inbound(site: Site, action: str, payload: dict) -> None:
    """One inbound message (an association, a STOW-RS request) in the audit log, in its own transaction once its
    images are done. A database that is down here must not turn the answer to the sender into an error."""
    try:
        with transaction.atomic():
            audit.record(actor=None, action=action, obj=site, trial=site.trial, payload={"site": site.code, **payload})
    except DatabaseError:
        logger.error("%s for site %s not audited: the database is unavailable", action, site.code, exc_info=True)


@dataclass
class _Tally:
    """What one association of a known sender sent, for its audit event when the association ends."""

    site: Site
    calling_ae: str
    instances: int = 0
    stored: int = 0
    rate_limited: int = 0
    first_rate_refusal: bool = False
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, answer: Answer, *, limit: ratelimit.Hit | None = None) -> None:
        """Count one C-STORE's answer; `limit`: the rate-limit count it was checked against, if any."""
        self.instances += 1
        if limit is not None and not limit.allowed:
            self.rate_limited += 1
            self.first_rate_refusal |= limit.first_refusal
        if answer.status == SUCCESS:
            self.stored += 1
        else:
            code = f"{answer.status:04X}"
            self.failures[code] = self.failures.get(code, 0) + 1

    def worth_auditing(self) -> bool:
        # A sender over its limit that keeps opening associations is audited once a window, not once per try.
        all_refused_for_rate = self.instances and self.rate_limited == self.instances
        return bool(self.instances) and (not all_refused_for_rate or self.first_rate_refusal)

    def payload(self, ended: str) -> dict:
        return {"calling_ae": self.calling_ae, "instances": self.instances, "stored": self.stored,
                "failed": self.instances - self.stored, "failures": dict(sorted(self.failures.items())),
                "ended": ended}


# pynetdicom runs each association in its own thread: the lock guards the map between them; entries go with their
# association (weak keys) if it ends without an event we handle.
_tallies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tallies_lock = threading.Lock()


def _tally(assoc) -> _Tally | None:
    with _tallies_lock:
        return _tallies.get(assoc)


def senders() -> dict[str, Site]:
    """Calling AE title → the site it sends to, among the trials receiving images."""
    out = {}
    for site in Site.objects.filter(trial__status__in=RECEIVING).select_related("trial"):
        for title in site.dicom_ae_titles:
            out[title] = site
    return out


def store(*, site: Site, data: bytes, sop_instance_uid: str, source: str = "dicom") -> Answer:
    """Receive one image for `site` and say what happened, in DIMSE terms (module docstring); STOW-RS answers each
    instance with the same status (PS3.18 uses the DIMSE codes for its Failure Reason)."""
    try:
        case = services.receive_image(trial=site.trial, site=site, data=data, source=source,
                                      filename=f"{sop_instance_uid}.dcm")
    except NotEnrolled as exc:
        if exc.code in dicom.EXCLUSION_CODES:
            return Answer(SUCCESS)  # screened out by the trial's rules: logged, nothing more to do
        return Answer(NOT_AUTHORIZED, exc.message)
    except DuplicateImage:
        return Answer(SUCCESS)  # already enrolled: a retry of the PACS changes nothing
    except (CaseRejected, FileTooLarge) as exc:
        return Answer(CANNOT_UNDERSTAND, exc.message)
    except WrongStatus as exc:
        return Answer(NOT_AUTHORIZED, exc.message)
    except (OperationalError, InterfaceError, OSError) as exc:  # the database or storage down: worth a retry
        logger.warning("Image %s for site %s not received (retry later): %s", sop_instance_uid, site.code, exc)
        return Answer(OUT_OF_RESOURCES, "Storage unavailable; retry later")
    except ServiceError as exc:
        return Answer(PROCESSING_FAILURE, exc.message)
    except Exception:
        logger.exception("Image %s for site %s failed", sop_instance_uid, site.code)
        return Answer(PROCESSING_FAILURE, "Processing failure")
    if case is None:  # stored and waiting for a frontal image of its study (trial.services.receive_image)
        logger.info("Image %s for %s staged until its study has a frontal image", sop_instance_uid, site.trial.code)
    else:
        logger.info("Image %s enrolled in %s/%s", sop_instance_uid, site.trial.code, case.code)
    return Answer(SUCCESS)


class TrialAE(AE):
    """An AE whose allow-list of callers is the sites' senders, read when each association is negotiated."""

    @property
    def require_calling_aet(self) -> list[str]:
        close_old_connections()  # a thread of the listener may hold a connection the database closed meanwhile
        return sorted(senders()) or [NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, value) -> None:  # pynetdicom's own default on start; the database decides
        pass


def _on_established(event) -> None:
    """A known AE title calling from a host its site does not list: aborted before anything is sent."""
    close_old_connections()
    calling = event.assoc.requestor.ae_title.strip()
    site = senders().get(calling)
    address = event.assoc.requestor.address
    if site is None or (site.dicom_hosts and address not in site.dicom_hosts):
        logger.warning("Association from %s at %s aborted: not an allowed host", calling, address)
        event.assoc.abort()
        if site is not None and ratelimit.hit(f"dicom-refused:{site.pk}:{address}", per_minute=1).allowed:
            audit_inbound(site, "dicom.refused", {"calling_ae": calling, "address": address,
                                                  "refused": "host_not_allowed"})
        return
    with _tallies_lock:
        _tallies[event.assoc] = _Tally(site=site, calling_ae=calling)


def _on_store(event) -> Dataset:
    close_old_connections()
    answer, limit = _answer_store(event)
    tally = _tally(event.assoc)
    if tally is not None:
        tally.add(answer, limit=limit)
    return answer.dataset()


def _answer_store(event) -> tuple[Answer, ratelimit.Hit | None]:
    """The answer to one C-STORE, and the rate-limit count it was checked against (None when the caller is no longer
    a sender)."""
    started = time.monotonic()
    site = senders().get(event.assoc.requestor.ae_title.strip())
    if site is None:  # its site was removed or its trial locked during the association
        return Answer(NOT_AUTHORIZED, "Calling AE title no longer accepted"), None
    limit = ratelimit.hit(f"dicom:site:{site.pk}", per_minute=settings.CXR_INBOUND_PER_MINUTE)
    if not limit.allowed:  # one sender in a loop must not crowd out the others: the PACS retries later
        if limit.first_refusal:
            logger.warning("Site %s over its limit of %d images a minute over DICOM", site.code, limit.limit)
        return Answer(OUT_OF_RESOURCES, f"Over {limit.limit} images a minute; retry in {limit.retry_after} s"), limit
    data = event.encoded_dataset(include_meta=True)
    answer = store(site=site, data=data, sop_instance_uid=str(event.request.AffectedSOPInstanceUID))
    logger.info("C-STORE from %s: status 0x%04X in %.0f ms", event.assoc.requestor.ae_title, answer.status,
                1000 * (time.monotonic() - started))
    return answer, limit


def _on_echo(event) -> int:
    return SUCCESS


def application_entity(*, ae_title: str | None = None) -> TrialAE:
    """The listener's AE with its limits (settings.CXR_DICOM_*): C-ECHO, and C-STORE of CR and DX images in every
    transfer syntax pydicom may decode (a syntax it cannot decode is refused per image with its reason)."""
    ae = TrialAE(ae_title=ae_title or settings.CXR_DICOM_AE_TITLE)
    ae.maximum_associations = settings.CXR_DICOM_MAX_ASSOCIATIONS
    ae.maximum_pdu_size = settings.CXR_DICOM_MAX_PDU
    ae.acse_timeout = ae.dimse_timeout = settings.CXR_DICOM_TIMEOUT
    ae.network_timeout = settings.CXR_DICOM_NETWORK_TIMEOUT
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def _on_closed(event) -> None:
    """An association ended: its thread's database connection is closed now, as Django does at the end of a request,
    not left to the garbage collector, which would close it later in whatever thread runs then (and its
    ResourceWarning would land in that thread's work, e.g. an image being decoded). An association that sent images
    goes into the audit log first, once (a release is followed by the connection's close)."""
    with _tallies_lock:
        tally = _tallies.pop(event.assoc, None)
    if tally is not None and tally.worth_auditing():
        ended = {evt.EVT_RELEASED: "released", evt.EVT_ABORTED: "aborted"}.get(event.event, "connection_closed")
        audit_inbound(tally.site, "dicom.association", tally.payload(ended))
    close_thread_connections()


HANDLERS = [(evt.EVT_C_STORE, _on_store), (evt.EVT_C_ECHO, _on_echo), (evt.EVT_ESTABLISHED, _on_established),
            (evt.EVT_RELEASED, _on_closed), (evt.EVT_ABORTED, _on_closed), (evt.EVT_REJECTED, _on_closed),
            (evt.EVT_CONN_CLOSE, _on_closed)]


def serve(*, host: str, port: int, ae_title: str | None = None, block: bool = True):
    """Listen on host:port (block=False: in a thread; returns the server, whose shutdown() stops it); over DICOM TLS
    only when settings.CXR_DICOM_LISTENER_TLS (trial.tls)."""
    ae = application_entity(ae_title=ae_title)
    context = None
    if settings.CXR_DICOM_LISTENER_TLS:
        context = tls.dicom_tls_context(server=True)
        if context is None:
            raise ImproperlyConfigured("CXR_DICOM_LISTENER_TLS needs CXR_DICOM_TLS_CERT (and its key).")
    return ae.start_server((host, port), block=block, evt_handlers=HANDLERS, ssl_context=context)
