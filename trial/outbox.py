"""The outbox to the hospital: services that release a case's report of record and deliver it to its site's systems
(a DICOM Structured Report by C-STORE to the PACS, a FHIR DiagnosticReport to the FHIR server).

The release (a Release row and one Delivery per configured destination) is written by `release_report`, in the
transaction of the signature that made the report of record (reading.services), so a signed report is never left
unsent and nothing is sent for a signature that rolled back. A Celery task (trial.tasks.deliver_report) delivers each
Delivery once its transaction commits, recording every attempt and its answer; a failed attempt is tried again by the
beat sweep (trial.tasks.deliver_due_reports) after an exponential backoff; after CXR_OUTBOX_MAX_ATTEMPTS it is
"failed" and shows on the outbox page with its reason and a resend button.

Exactly once per destination, even when a worker dies mid-delivery: a delivery is sent under its row lock (two
workers never send it at the same time; `skip_locked` lets the second one go), a delivered one is never sent again
by the task, and every attempt sends the same identifiers — the SR's SOP Instance UID, fixed in the Release, and a
FHIR conditional create on the version's identifier — so a retry after a worker died between the receiver's answer
and our commit is recognised by the receiver as the instance it already holds, not stored twice.

PHI: the message is built here, from the investigator-only identity key, and goes only to the destinations of the
case's own site (copied into the Delivery when released). The audit events and the attempts hold no PHI: a status,
its comment, the case's code.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from core import clock
from core.errors import ServiceError, WrongStatus

from . import audit, tls
from .hospital import fhir as fhir_message
from .hospital import sr as sr_message
from .hospital.report import ImageRef, OutboundReport, Patient
from .models import Case, Delivery, DeliveryAttempt, Release, Role, Site, Status
from .selectors import require_role
from .tasks import deliver_report as deliver_report_task

logger = logging.getLogger(__name__)

ANSWER_LIMIT = 400
MAX_BACKOFF_SECONDS = 3600
# DIMSE statuses a storage SCP answers for an instance it keeps: success, and the warnings of PS3.4 B.2.3 (coercion
# of data elements, data set does not match SOP class, elements discarded).
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}


# ------------------------------------------------------------------------------------------ releasing


def _uid(case: Case, *parts: object) -> str:
    """A UID the trial's secret and `parts` fix (pydicom's generate_uid hashes its entropy sources): the same every
    time it is asked, so a retry re-sends the same instance, and not guessable from the case without the secret."""
    root = settings.CXR_UID_ROOT
    return generate_uid(prefix=None if root == "2.25." else root,
                        entropy_srcs=[bytes(case.trial.uid_secret).hex(), "report-of-record", str(case.pk),
                                      *map(str, parts)])


def _destinations(site: Site) -> list[tuple[str, str]]:
    out = []
    if site.pacs_ae_title and site.pacs_host and site.pacs_port:
        out.append((Delivery.Channel.DICOM_SR,
                    f"{site.pacs_ae_title}@{site.pacs_host}:{site.pacs_port}" + (" (TLS)" if site.pacs_tls else "")))
    if site.fhir_base_url:
        out.append((Delivery.Channel.FHIR, site.fhir_base_url))
    return out


def release_report(*, case: Case, source: str, findings: str, impression: str, signed_by_id: int,
                   signed_at) -> Release | None:
    """Release the case's report of record as it now stands: version 1, or a new version amending the last one when
    its text changed (a correction signed after release); None when nothing changed (e.g. the other arm's report was
    signed). Call it inside the transaction of the signature. Delivery starts once that transaction commits."""
    latest = Release.objects.filter(case=case).order_by("-version").first()
    if latest is not None and (latest.source, latest.findings, latest.impression) == (source, findings, impression):
        return None
    signer = get_user_model().objects.get(pk=signed_by_id)
    version = 1 if latest is None else latest.version + 1
    release = Release.objects.create(
        trial_id=case.trial_id, case=case, version=version, source=source, findings=findings, impression=impression,
        signed_by=signer, signer_name=(signer.get_full_name() or signer.get_username())[:300], signed_at=signed_at,
        created_at=clock.now(), sr_series_instance_uid=_uid(case, "series"), sr_sop_instance_uid=_uid(case, version),
        amends=latest)
    deliveries = [Delivery.objects.create(release=release, channel=channel, destination=destination,
                                          next_attempt_at=release.created_at)
                  for channel, destination in _destinations(case.site)]
    audit.record(actor=None, action="report.released", obj=release, trial=case.trial, payload={
        "case": case.code, "version": version, "amends": latest.version if latest else None,
        "deliveries": [d.channel for d in deliveries]})
    for delivery in deliveries:
        delivery_id = delivery.pk
        # robust: a broker that is down is logged; the beat sweep (deliver_due_reports) sends it later
        transaction.on_commit(lambda d=delivery_id: deliver_report_task.delay(d), robust=True)
    return release


# ------------------------------------------------------------------------------------------ the messages


def outbound_report(release: Release) -> OutboundReport:
    """The message's content: the release and the case's identity key (the only place PHI is read for sending)."""
    case = release.case
    identity = case.identity
    amended = release.amends
    return OutboundReport(
        patient=Patient(id=identity.patient_id, name=identity.patient_name, birth_date=identity.patient_birth_date,
                        sex=identity.patient_sex),
        accession_number=identity.accession_number, study_instance_uid=identity.study_instance_uid,
        # every image of the study the report is about: the primary, then the others (a lateral, a repeat)
        images=(ImageRef(series_instance_uid=identity.series_instance_uid, sop_class_uid=identity.sop_class_uid,
                         sop_instance_uid=identity.sop_instance_uid),
                *(ImageRef(series_instance_uid=i.original_series_instance_uid, sop_class_uid=i.original_sop_class_uid,
                           sop_instance_uid=i.original_sop_instance_uid)
                  for i in case.images.order_by("received_at", "pk"))),
        findings=release.findings, impression=release.impression, observer_name=release.signer_name,
        # the hospital reads the times in its own zone (the site's), as its other reports have them
        signed_at=release.signed_at.astimezone(ZoneInfo(case.site.time_zone)), institution=case.site.name,
        version=release.version,
        sr_series_instance_uid=release.sr_series_instance_uid, sr_sop_instance_uid=release.sr_sop_instance_uid,
        report_id=f"{case.trial.code}-{case.code}",
        replaces_sr_sop_instance_uid=amended.sr_sop_instance_uid if amended else "",
        replaces_sr_series_instance_uid=amended.sr_series_instance_uid if amended else "")


def fhir_json(*, release: Release) -> str:
    """The FHIR DiagnosticReport of a release (what is POSTed to the site's FHIR server, or downloaded)."""
    return fhir_message.diagnostic_report_json(outbound_report(release),
                                               identifier_system=settings.CXR_FHIR_IDENTIFIER_SYSTEM)


@dataclass(frozen=True)
class Answer:
    ok: bool
    text: str


def _send_sr(site: Site, release: Release) -> Answer:
    from pynetdicom import AE

    ds = sr_message.build_sr(outbound_report(release))
    ae = AE(ae_title=settings.CXR_DICOM_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.CXR_OUTBOX_TIMEOUT
    ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    tls_args = None
    if site.pacs_tls:
        context = tls.dicom_tls_context(server=False)
        if context is None:
            return Answer(False, "The site asks for DICOM TLS but no certificate is configured (CXR_DICOM_TLS_CERT).")
        tls_args = (context, site.pacs_host)
    assoc = ae.associate(site.pacs_host, site.pacs_port, ae_title=site.pacs_ae_title, tls_args=tls_args)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "could not be reached"
        return Answer(False, f"The PACS {site.pacs_ae_title} at {site.pacs_host}:{site.pacs_port} {why}.")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return Answer(False, "The PACS gave no answer to the C-STORE (connection lost or timed out).")
    code = int(status.Status)
    comment = str(status.get("ErrorComment", "") or "")
    text = f"C-STORE status 0x{code:04X}" + (f": {comment}" if comment else "")
    return Answer(code in STORED_STATUSES, text)


def _send_fhir(site: Site, release: Release) -> Answer:
    import requests

    report = outbound_report(release)
    headers = {"Content-Type": "application/fhir+json; charset=utf-8", "Accept": "application/fhir+json",
               # conditional create: a retry of a version the server already holds creates nothing (FHIR R4 3.1.0.8.1)
               "If-None-Exist": f"identifier={settings.CXR_FHIR_IDENTIFIER_SYSTEM}|"
                                f"{fhir_message.version_identifier(report, report.version)}"}
    if site.fhir_token_env:
        token = os.environ.get(site.fhir_token_env, "")
        if not token:
            return Answer(False, f"The FHIR token's environment variable {site.fhir_token_env} is not set.")
        headers["Authorization"] = f"Bearer {token}"
    body = fhir_message.diagnostic_report_json(report, identifier_system=settings.CXR_FHIR_IDENTIFIER_SYSTEM)
    try:
        response = requests.post(f"{site.fhir_base_url}/DiagnosticReport", data=body.encode(),
                                 headers=headers, timeout=settings.CXR_OUTBOX_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return Answer(False, f"The FHIR server could not be reached: {type(exc).__name__}.")
    # Only the status line: a server's error body may echo the resource (PHI) and goes nowhere.
    return Answer(response.status_code in (200, 201), f"HTTP {response.status_code} {response.reason}")


SENDERS = {Delivery.Channel.DICOM_SR: _send_sr, Delivery.Channel.FHIR: _send_fhir}


# ------------------------------------------------------------------------------------------ delivering


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(settings.CXR_OUTBOX_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0),
                                 MAX_BACKOFF_SECONDS))


def deliver(*, delivery_id: int, by=None) -> Delivery | None:
    """One attempt to deliver, under the delivery's row lock; None when another worker holds it. The task leaves a
    delivered or failed delivery alone; `by` (a person resending) sends a failed one again. Returns the delivery as
    it stands after the attempt (still pending: `next_attempt_at` says when the sweep tries again)."""
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("release__case__site", "release__case__trial", "release__case__identity",
                                    "release__amends").filter(pk=delivery_id).first())
        if delivery is None or delivery.state == Delivery.State.DELIVERED:
            return delivery
        if delivery.state == Delivery.State.FAILED and by is None:
            return delivery
        release = delivery.release
        site = release.case.site
        started = clock.now()
        if dict(_destinations(site)).get(delivery.channel) != delivery.destination:
            # the site's destination changed since release: PHI goes only where the site says now, so nothing is
            # sent to the old one; an investigator resends to the new one by hand (resend)
            answer = Answer(False, "The site's destination changed since release; resend to send it to the new one.")
        else:
            try:
                answer = SENDERS[delivery.channel](site, release)
            except Exception as exc:  # a wire fault of any kind is an attempt that failed, with its reason
                logger.exception("Delivery %s failed", delivery.pk)
                answer = Answer(False, f"{type(exc).__name__}: {exc}")
        finished = clock.now()
        DeliveryAttempt.objects.create(delivery=delivery, started_at=started, finished_at=finished, ok=answer.ok,
                                       answer=answer.text[:ANSWER_LIMIT], by=by)
        delivery.attempts += 1
        if answer.ok:
            delivery.state, delivery.delivered_at, delivery.next_attempt_at = Delivery.State.DELIVERED, finished, None
            delivery.last_error = ""
        elif delivery.attempts >= settings.CXR_OUTBOX_MAX_ATTEMPTS and by is None:
            delivery.state, delivery.next_attempt_at = Delivery.State.FAILED, None
            delivery.last_error = answer.text[:ANSWER_LIMIT]
        else:
            delivery.state = Delivery.State.PENDING
            delivery.next_attempt_at = finished + _backoff(delivery.attempts)
            delivery.last_error = answer.text[:ANSWER_LIMIT]
        delivery.save(update_fields=["state", "attempts", "next_attempt_at", "last_error", "delivered_at"])
        audit.record(actor=by, action="report.delivered" if answer.ok else "report.delivery_failed", obj=delivery,
                     trial=release.case.trial, payload={
                         "case": release.case.code, "version": release.version, "channel": delivery.channel,
                         "attempt": delivery.attempts, "answer": answer.text[:ANSWER_LIMIT]})
    # A delivery still pending is tried again by the beat sweep (deliver_due, every minute) once its backoff is over:
    # one retry path, which also serves tasks that were lost.
    return delivery


def deliver_due(*, limit: int = 200) -> int:
    """For celery beat: the pending deliveries whose next attempt is due (their task was lost: the broker was down,
    a worker died); each is sent by its own task, which the row lock keeps from running twice at once."""
    due = list(Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lte=clock.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for delivery_id in due:
        deliver_report_task.delay(delivery_id)
    return len(due)


def resend(*, delivery: Delivery, by) -> Delivery:
    """An investigator sends a delivery again now (a failed one, or one the hospital says it lost), to the site's
    destination as it is set now. The receiver keeps one copy: the same UIDs and identifier as before."""
    release = delivery.release
    require_role(trial=release.trial, user=by, roles=[Role.INVESTIGATOR])
    if release.trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    current = dict(_destinations(release.case.site))
    if delivery.channel not in current:
        raise ServiceError("The site has no destination for this channel any more; set one on the conduct page.")
    with transaction.atomic():
        locked = Delivery.objects.select_for_update(of=("self",)).get(pk=delivery.pk)
        locked.destination, locked.state, locked.next_attempt_at = current[delivery.channel], \
            Delivery.State.PENDING, clock.now()
        locked.save(update_fields=["destination", "state", "next_attempt_at"])
        audit.record(actor=by, action="report.resend_requested", obj=locked, trial=release.trial, payload={
            "case": release.case.code, "version": release.version, "channel": locked.channel})
    return deliver(delivery_id=delivery.pk, by=by) or locked
