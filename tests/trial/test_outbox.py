"""The outbox to the hospital: a signed report of record is released in the signature's transaction and delivered to
its site's PACS (a DICOM SR by C-STORE: here a pynetdicom Storage SCP that keeps what it receives, by SOP Instance UID,
as a PACS does) and FHIR server (here a small HTTP server that validates each DiagnosticReport with fhir.resources
and honours conditional creates, as a FHIR server does). Orthanc as the real PACS: tests/integration."""
from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from django.test import override_settings
from pynetdicom import AE, AllStoragePresentationContexts, evt

from core import clock
from core.errors import ServiceError
from reading import services as reading_services
from reading.models import Read
from tests.live import arrive, committed, image, open_trial
from tests.signing import proof
from trial import outbox
from trial import services as trial_services
from trial.models import AuditEvent, Case, Delivery, Release, Role

pytestmark = pytest.mark.django_db

ACCESSION = "ACC-7781"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePacs:
    """A Storage SCP keeping one instance per SOP Instance UID (a PACS does not store an instance twice)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.instances: dict[str, pydicom.Dataset] = {}
        self.received = 0
        self.status = 0x0000
        self.server = None

    def _on_store(self, event):
        self.received += 1
        ds = event.dataset
        ds.file_meta = event.file_meta
        if self.status == 0x0000:
            self.instances.setdefault(str(ds.SOPInstanceUID), ds)
        return self.status

    def start(self):
        ae = AE(ae_title="HOSPPACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server = None


class FakeFhir:
    """POST /DiagnosticReport: validated with fhir.resources; If-None-Exist on an identifier already held creates
    nothing (200), else 201."""

    def __init__(self) -> None:
        self.resources: dict[str, dict] = {}
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server protocol
                from fhir.resources.R4B.diagnosticreport import DiagnosticReport

                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                DiagnosticReport.model_validate_json(body)  # a bad resource fails the test through a 500 below
                key = self.headers.get("If-None-Exist", "")
                status = 200 if key in outer.resources else 201
                outer.resources.setdefault(key, json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/r4"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def pacs():
    fake = FakePacs().start()
    yield fake
    fake.stop()


@pytest.fixture
def fhir():
    fake = FakeFhir()
    yield fake
    fake.stop()


@pytest.fixture
def released_trial(investigator, make_user, pacs, fhir, settings):
    settings.CXR_ALLOW_PLAIN_HTTP_DESTINATIONS = True
    live = open_trial(investigator=investigator, make_user=make_user, code="outbox", release_policy="standard",
                      require_signoff=True, draft_rule="read_without")
    senior = make_user("outbox-senior")
    trial_services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    trial_services.set_site_destinations(site=live.sites[0], by=investigator, pacs_ae_title="HOSPPACS",
                                         pacs_host="127.0.0.1", pacs_port=pacs.port, fhir_base_url=fhir.url)
    case = arrive(live.trial, live.sites[0], image(1, AccessionNumber=ACCESSION))
    return live, senior, case


def _read(case, *, arms=("standard", "assisted")) -> dict[str, object]:
    Case.objects.filter(pk=case.pk).update(arrived_at=clock.now() - timedelta(days=1))  # past the draft limit
    reports = {}
    for read in Read.objects.filter(case=case, arm__in=arms).select_related("reader__user"):
        user = read.reader.user
        with committed():
            reading_services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t")
            reports[read.arm] = reading_services.submit_report(
                read_id=read.pk, by=user, findings=f"{read.arm} findings: clear lungs, é ü 肺",
                impression=f"{read.arm} impression", finding_flags={}, tab_id="t")
    return reports


def _correct_and_sign(case, senior, *, impression: str, reason: str):
    """The senior corrects the case's standard report after release and signs the new version."""
    read = Read.objects.get(case=case, arm="standard")
    with committed():
        reading_services.correct_and_sign(read_id=read.pk, by=senior, findings="standard findings",
                                          impression=impression, finding_flags={}, reason=reason,
                                          proof=proof(senior))


def _sign(report, senior):
    with committed():
        return reading_services.sign_report(report=report, by=senior, proof=proof(senior))


def test_signing_the_report_of_record_releases_it_and_delivers_it_to_the_pacs_and_the_fhir_server(
        released_trial, pacs, fhir):
    live, senior, case = released_trial
    reports = _read(case)
    _sign(reports["assisted"], senior)  # not the report of record under this policy
    assert not Release.objects.exists()
    _sign(reports["standard"], senior)
    release = Release.objects.get(case=case)
    assert (release.version, release.source, release.impression) == (1, "standard", "standard impression")
    deliveries = {d.channel: d for d in release.deliveries.all()}
    assert all(d.state == Delivery.State.DELIVERED and d.attempts == 1 for d in deliveries.values())
    # the SR is in the ORIGINAL study, with the original patient and accession, and the report's text
    sr = pacs.instances[release.sr_sop_instance_uid]
    identity = case.identity
    assert sr.StudyInstanceUID == identity.study_instance_uid and sr.PatientID == identity.patient_id
    assert sr.AccessionNumber == ACCESSION and sr.VerificationFlag == "VERIFIED"
    text = json.dumps(sr.to_json_dict())
    assert "standard findings: clear lungs" in text and "standard impression" in text
    assert len(pacs.instances) == 1
    # the FHIR server got one final DiagnosticReport, conditionally created on the version's identifier
    (request,) = fhir.requests
    assert request["path"] == "/r4/DiagnosticReport"
    assert request["headers"]["If-None-Exist"].endswith(f"{live.trial.code}-{case.code}/v1")
    body = json.loads(request["body"])
    assert body["status"] == "final" and body["conclusion"] == "standard impression"
    # audited, without the report's text or any PHI
    events = AuditEvent.objects.filter(action__in=["report.released", "report.delivered"])
    assert events.count() == 3
    for event in events:
        payload = json.dumps(event.payload)
        assert "impression" not in payload and ACCESSION not in payload and identity.patient_id not in payload


def test_a_correction_after_release_is_an_amendment_referencing_the_first(released_trial, pacs, fhir):
    live, senior, case = released_trial
    reports = _read(case, arms=("standard",))
    _sign(reports["standard"], senior)
    _correct_and_sign(case, senior, impression="Small left pleural effusion.", reason="Effusion missed")
    first, second = Release.objects.filter(case=case).order_by("version")
    assert second.amends == first and second.impression == "Small left pleural effusion."
    assert second.sr_sop_instance_uid != first.sr_sop_instance_uid
    sr = pacs.instances[second.sr_sop_instance_uid]
    assert sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == first.sr_sop_instance_uid
    assert len(pacs.instances) == 2  # a new SR, not a duplicate of the first
    amended = json.loads(fhir.requests[-1]["body"])
    assert amended["status"] == "amended" and amended["conclusion"] == "Small left pleural effusion."


def test_the_pacs_down_at_release_gets_the_report_once_it_is_back(released_trial, pacs):
    live, senior, case = released_trial
    pacs.stop()
    reports = _read(case, arms=("standard",))
    _sign(reports["standard"], senior)
    delivery = Delivery.objects.get(channel=Delivery.Channel.DICOM_SR)
    assert delivery.state == Delivery.State.PENDING and delivery.attempts == 1
    assert "could not be reached" in delivery.last_error and delivery.next_attempt_at > clock.now()
    assert outbox.deliver_due() == 0  # not due before its backoff is over
    pacs.start()
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=clock.now() - timedelta(seconds=1))
    assert outbox.deliver_due() == 1  # eager: the task ran
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.DELIVERED and delivery.attempts == 2
    assert list(delivery.tries.values_list("ok", flat=True)) == [False, True]
    assert len(pacs.instances) == 1


class WorkerDied(BaseException):
    """What a worker killed mid-task looks like to the code after the send: it never runs."""


def test_a_worker_dying_after_the_pacs_stored_the_sr_sends_the_same_instance_again(released_trial, pacs,
                                                                                     monkeypatch):
    live, senior, case = released_trial
    real_send = outbox.SENDERS[Delivery.Channel.DICOM_SR]

    def send_then_die(site, release):
        real_send(site, release)
        raise WorkerDied

    monkeypatch.setitem(outbox.SENDERS, Delivery.Channel.DICOM_SR, send_then_die)
    reports = _read(case, arms=("standard",))
    with pytest.raises(WorkerDied):
        _sign(reports["standard"], senior)
    delivery = Delivery.objects.get(channel=Delivery.Channel.DICOM_SR)
    assert delivery.state == Delivery.State.PENDING and delivery.attempts == 0  # rolled back: no attempt recorded
    monkeypatch.setitem(outbox.SENDERS, Delivery.Channel.DICOM_SR, real_send)
    outbox.deliver(delivery_id=delivery.pk)  # the redelivered task
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.DELIVERED
    assert pacs.received == 2 and len(pacs.instances) == 1  # sent twice, held once: the same SOP Instance UID
    outbox.deliver(delivery_id=delivery.pk)  # a third, late task sends nothing
    assert pacs.received == 2


def test_a_refusing_pacs_exhausts_the_retries_then_an_investigator_resends(released_trial, pacs, investigator,
                                                                            settings):
    settings.CXR_OUTBOX_MAX_ATTEMPTS = 2
    live, senior, case = released_trial
    pacs.status = 0xA700
    reports = _read(case, arms=("standard",))
    _sign(reports["standard"], senior)
    delivery = Delivery.objects.get(channel=Delivery.Channel.DICOM_SR)
    assert delivery.last_error == "C-STORE status 0xA700"
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=clock.now())
    outbox.deliver_due()
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.FAILED and delivery.attempts == 2
    assert outbox.deliver_due() == 0  # a failed delivery waits for a person
    pacs.status = 0x0000
    delivery = outbox.resend(delivery=delivery, by=investigator)
    assert delivery.state == Delivery.State.DELIVERED and delivery.tries.last().by == investigator
    assert len(pacs.instances) == 1
    assert AuditEvent.objects.filter(action="report.resend_requested", actor=investigator).exists()


def test_nothing_goes_to_a_destination_the_site_no_longer_names(released_trial, pacs, investigator):
    live, senior, case = released_trial
    pacs.stop()
    reports = _read(case, arms=("standard",))
    _sign(reports["standard"], senior)
    pacs.start()
    trial_services.set_site_destinations(site=live.sites[0], by=investigator, pacs_ae_title="OTHER",
                                         pacs_host="127.0.0.1", pacs_port=pacs.port)
    delivery = Delivery.objects.get(channel=Delivery.Channel.DICOM_SR)
    outbox.deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.PENDING and "destination changed" in delivery.last_error
    assert not pacs.instances
    # the FHIR destination was removed: its resend is refused
    with pytest.raises(ServiceError):
        outbox.resend(delivery=Delivery.objects.get(channel=Delivery.Channel.FHIR), by=investigator)


def test_a_fhir_retry_creates_nothing_new(released_trial, fhir):
    live, senior, case = released_trial
    reports = _read(case, arms=("standard",))
    _sign(reports["standard"], senior)
    delivery = Delivery.objects.get(channel=Delivery.Channel.FHIR)
    Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.State.PENDING)  # as if the commit had been lost
    outbox.deliver(delivery_id=delivery.pk)
    assert len(fhir.requests) == 2 and len(fhir.resources) == 1


def test_a_research_only_trial_and_a_site_without_destinations_send_nothing(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, code="outbox-ro", require_signoff=True,
                      draft_rule="read_without")
    senior = make_user("outbox-ro-senior")
    trial_services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
    case = arrive(live.trial, live.sites[0], image(2))
    for report in _read(case).values():
        _sign(report, senior)
    assert not Release.objects.exists()


def test_destinations_are_checked(investigator, make_user, settings):
    live = open_trial(investigator=investigator, make_user=make_user, code="outbox-dest")
    site = live.sites[0]
    for bad in ({"pacs_ae_title": "PACS"}, {"pacs_ae_title": "PACS", "pacs_host": "h", "pacs_port": 70000},
                {"pacs_ae_title": "BAD\\AE", "pacs_host": "h", "pacs_port": 104},
                {"fhir_base_url": "not a url"}, {"fhir_base_url": "http://fhir.example/r4"},
                {"fhir_token_env": "NOT A NAME"}):
        with pytest.raises(ServiceError):
            trial_services.set_site_destinations(site=site, by=investigator, **bad)
    site.refresh_from_db()
    assert (site.pacs_ae_title, site.fhir_base_url) == ("", "")
    reader = live.readers[0]
    with pytest.raises(Exception):
        trial_services.set_site_destinations(site=site, by=reader, fhir_base_url="https://fhir.example/r4")
    settings.CXR_ALLOW_PLAIN_HTTP_DESTINATIONS = True
    trial_services.set_site_destinations(site=site, by=investigator, fhir_base_url="http://fhir.example/r4/")
    site.refresh_from_db()
    assert site.fhir_base_url == "http://fhir.example/r4"


@override_settings(CXR_ALLOW_PLAIN_HTTP_DESTINATIONS=True)
def test_the_outbox_page_shows_deliveries_to_investigators_only_and_no_report_text(released_trial, client,
                                                                                   investigator, pacs):
    live, senior, case = released_trial
    pacs.stop()
    _sign(_read(case, arms=("standard",))["standard"], senior)
    client.force_login(investigator)
    page = client.get(f"/t/{live.trial.code}/hospital/")
    assert page.status_code == 200
    html = page.content.decode()
    assert case.code in html and "could not be reached" in html and "standard impression" not in html
    assert case.identity.patient_id not in html
    download = client.get(f"/t/{live.trial.code}/hospital/releases/{case.code}/v1.fhir.json")
    assert download.status_code == 200 and download["Cache-Control"] == "no-store"
    assert json.loads(download.content)["resourceType"] == "DiagnosticReport"
    assert AuditEvent.objects.filter(action="report.fhir_downloaded", actor=investigator).exists()
    delivery = Delivery.objects.get(channel=Delivery.Channel.DICOM_SR)
    pacs.start()
    response = client.post(f"/t/{live.trial.code}/hospital/deliveries/{delivery.pk}/resend/")
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.DELIVERED
    client.force_login(senior)
    assert client.get(f"/t/{live.trial.code}/hospital/").status_code in (403, 404)
    assert client.get(f"/t/{live.trial.code}/hospital/releases/{case.code}/v1.fhir.json").status_code in (403, 404)
