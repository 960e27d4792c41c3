"""DICOM TLS (PS3.15 B.1) on both wires: the listener speaks only TLS when asked, and with a CA configured only to
callers whose certificate that CA signed; a report goes to a PACS over TLS when its site asks for it. Certificates
are made for the test by the openssl command line (a test CA, a server and a client certificate for 127.0.0.1)."""
from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import ComputedRadiographyImageStorage

from tests.live import arrive, image, open_trial
from tests.trial.test_outbox import _read, _sign
from trial import listener, services, tls
from trial.models import Case, Delivery, Role

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=cxr-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return d


def _client_context(certs, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs / "ca.pem"))
    if with_certificate:
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return context


@pytest.fixture
def tls_listener(investigator, make_user, _media, certificates, settings):
    settings.CXR_DICOM_LISTENER_TLS = True
    settings.CXR_DICOM_TLS_CERT = str(certificates / "server.pem")
    settings.CXR_DICOM_TLS_KEY = str(certificates / "server.key")
    settings.CXR_DICOM_TLS_CA = str(certificates / "ca.pem")
    live = open_trial(investigator=investigator, make_user=make_user, code="tls")
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=["PACS_TLS"])
    port = _free_port()
    server = listener.serve(host="127.0.0.1", port=port, block=False)
    yield live, port
    server.shutdown()


def _associate(port, tls_args=None):
    ae = AE(ae_title="PACS_TLS")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(ComputedRadiographyImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="CXRTRIAL", tls_args=tls_args)


def test_the_listener_over_tls_takes_films_from_a_caller_with_a_certificate_of_its_ca(tls_listener, certificates):
    live, port = tls_listener
    assoc = _associate(port, (_client_context(certificates, with_certificate=True), "127.0.0.1"))
    assert assoc.is_established
    status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(image(1))))
    assoc.release()
    assert status.Status == 0x0000
    assert Case.objects.filter(trial=live.trial).count() == 1


def test_the_listener_over_tls_refuses_plain_callers_and_callers_without_a_certificate(tls_listener, certificates):
    live, port = tls_listener
    assert not _associate(port).is_established
    assert not _associate(port, (_client_context(certificates, with_certificate=False), "127.0.0.1")).is_established
    assert not Case.objects.exists()


def test_listener_tls_without_a_certificate_is_a_configuration_error(settings):
    settings.CXR_DICOM_LISTENER_TLS, settings.CXR_DICOM_TLS_CERT = True, ""
    with pytest.raises(Exception, match="CXR_DICOM_TLS_CERT"):
        listener.serve(host="127.0.0.1", port=_free_port(), block=False)


def test_a_report_goes_to_a_pacs_over_tls_when_its_site_asks(investigator, make_user, _media, certificates,
                                                           settings):
    received = []
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(certificates / "server.pem"), str(certificates / "server.key"))
    ae = AE(ae_title="TLSPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    port = _free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=server_context,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset) or 0x0000)])
    try:
        # our client certificate and the CA that signed the PACS's
        settings.CXR_DICOM_TLS_CERT = str(certificates / "client.pem")
        settings.CXR_DICOM_TLS_KEY = str(certificates / "client.key")
        settings.CXR_DICOM_TLS_CA = str(certificates / "ca.pem")
        live = open_trial(investigator=investigator, make_user=make_user, code="tls-out", release_policy="standard",
                          require_signoff=True, draft_rule="read_without")
        senior = make_user("tls-senior")
        services.add_member(trial=live.trial, by=investigator, user=senior, role=Role.SENIOR)
        services.set_site_destinations(site=live.sites[0], by=investigator, pacs_ae_title="TLSPACS",
                                       pacs_host="127.0.0.1", pacs_port=port, pacs_tls=True)
        case = arrive(live.trial, live.sites[0], image(3))
        _sign(_read(case, arms=("standard",))["standard"], senior)
        delivery = Delivery.objects.get()
        assert delivery.state == Delivery.State.DELIVERED, delivery.last_error
        assert len(received) == 1 and delivery.destination.endswith("(TLS)")
        # without a certificate configured, a site that asks for TLS gets nothing in plain text
        settings.CXR_DICOM_TLS_CERT = ""
        assert tls.dicom_tls_context(server=False) is None
    finally:
        server.shutdown()
