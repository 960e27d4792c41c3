"""The DICOM listener with a real DICOM peer (pynetdicom as the PACS): who may call, and the status each image gets.
The listener runs in a thread of the test process on the test database (hence transaction=True)."""
from __future__ import annotations

import io
import socket
import time

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage, Verification

from tests.live import image, open_trial
from trial import listener, services
from trial.models import AuditEvent, Case, ScreeningEntry

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_listener(investigator, make_user, _media):
    live = open_trial(investigator=investigator, make_user=make_user, code="wire", settle_seconds=0)
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=["PACS_A"])
    port = _free_port()
    server = listener.serve(host="127.0.0.1", port=port, block=False)
    yield live, port
    server.shutdown()


def _associate(port: int, calling: str = "PACS_A"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(ComputedRadiographyImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="CXRTRIAL")


def _dataset(data: bytes):
    return pydicom.dcmread(io.BytesIO(data))


def _send(port: int, data: bytes, calling: str = "PACS_A"):
    assoc = _associate(port, calling)
    assert assoc.is_established
    try:
        return assoc.send_c_store(_dataset(data))
    finally:
        assoc.release()


def test_an_unknown_caller_is_refused_at_association(live_listener):
    _, port = live_listener
    assoc = _associate(port, calling="STRANGER")
    assert assoc.is_rejected and not assoc.is_established
    assert not ScreeningEntry.objects.exists()


def test_a_known_caller_is_answered_and_its_film_enrolled_and_routed(live_listener):
    live, port = live_listener
    assoc = _associate(port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    status = assoc.send_c_store(_dataset(image(1)))
    assoc.release()
    assert status.Status == 0x0000
    case = Case.objects.get(trial=live.trial)
    assert case.site == live.sites[0] and case.enrolled_by is None
    assert ScreeningEntry.objects.get(case=case).source == "dicom"
    assert case.reads.count() == 2  # routed at arrival, one reader of each arm
    assert AuditEvent.objects.filter(action="case.enrolled", actor__isnull=True).exists()


def test_each_outcome_has_its_status(live_listener, investigator):
    live, port = live_listener
    # screened out by a rule: success (logged, nothing more to do; a retry would change nothing)
    assert _send(port, image(2, ViewPosition="LL")).Status == 0x0000
    assert ScreeningEntry.objects.filter(code="view_position").count() == 1
    # the same film again (a PACS retry): success, one case
    assert _send(port, image(3)).Status == 0x0000
    assert _send(port, image(3)).Status == 0x0000
    assert Case.objects.filter(trial=live.trial).count() == 1
    # not a usable chest radiograph: failure with the reason
    status = _send(port, image(4, Modality="CT"))
    assert status.Status == 0xC000 and "radiograph" in str(status.ErrorComment).lower()
    # the site paused: refused, with the reason
    services.set_site_enrolment(site=live.sites[0], by=investigator, state="paused", reason="Night shift")
    status = _send(port, image(5))
    assert status.Status == 0x0124 and "paused" in str(status.ErrorComment).lower()
    assert Case.objects.filter(trial=live.trial).count() == 1
    assert len(str(status.ErrorComment)) <= listener.COMMENT_LIMIT


def test_the_database_down_tells_the_pacs_to_retry_and_stores_nothing(live_listener, monkeypatch):
    from django.db import OperationalError

    live, port = live_listener

    def down(**kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(listener.services, "receive_image", down)
    status = _send(port, image(6))
    assert status.Status == 0xA700 and "retry" in str(status.ErrorComment).lower()
    assert not Case.objects.exists()


def test_a_known_title_from_a_host_the_site_does_not_list_is_aborted(live_listener, investigator):
    live, port = live_listener
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=["PACS_A"],
                                    hosts=["10.1.2.3"])
    assoc = _associate(port)
    # the listener aborts it as soon as it is established, before any image is taken
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted and not assoc.is_established
    assert not Case.objects.exists() and not ScreeningEntry.objects.exists()


def test_a_sender_names_one_site_and_a_title_is_checked(investigator, make_user):
    from core.errors import Conflict, ServiceError

    first = open_trial(investigator=investigator, make_user=make_user, code="one")
    second = open_trial(investigator=investigator, make_user=make_user, code="two")
    services.set_site_dicom_senders(site=first.sites[0], by=investigator, ae_titles=["PACS_A"])
    with pytest.raises(Conflict, match="already sends to site"):
        services.set_site_dicom_senders(site=second.sites[0], by=investigator, ae_titles=["PACS_A"])
    for bad in ("", "A" * 17, "BAD\\TITLE"):
        with pytest.raises(ServiceError, match="AE title"):
            services.set_site_dicom_senders(site=second.sites[0], by=investigator, ae_titles=[bad])
    with pytest.raises(ServiceError, match="IP address"):
        services.set_site_dicom_senders(site=second.sites[0], by=investigator, ae_titles=["PACS_B"], hosts=["x"])
    second.sites[0].refresh_from_db()
    assert second.sites[0].dicom_ae_titles == []


def test_a_site_over_its_rate_limit_is_told_to_retry_later(live_listener, settings, monkeypatch):
    from django.core.cache import cache

    from trial import ratelimit

    live, port = live_listener
    settings.CXR_INBOUND_PER_MINUTE = 2
    monkeypatch.setattr(ratelimit, "_now", lambda: 1_000_020.0)  # one window, whenever the test runs
    cache.clear()
    statuses = [_send(port, image(30 + i)).Status for i in range(3)]
    assert statuses == [0x0000, 0x0000, 0xA700]  # out of resources: the PACS retries later
    assert Case.objects.filter(trial=live.trial).count() == 2
