"""The Hospital systems page: an investigator makes a site's sender key (shown once, never stored in clear, not
cached), revokes it, and sets where the site's reports go; nobody else may."""
from __future__ import annotations

import pytest

from tests.live import open_trial
from trial.models import ApiToken, AuditEvent, SenderToken
from trial.selectors import sender_token_for_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(investigator, make_user):
    return open_trial(investigator=investigator, make_user=make_user, code="wires")


def test_a_sender_key_is_shown_once_and_revoked(live, client, investigator):
    client.force_login(investigator)
    page = client.post(f"/t/{live.trial.code}/hospital/sites/site-a/tokens/", {"name": "PACS router"})
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    key = page.context["new_key"]
    token = SenderToken.objects.get()
    assert key.startswith("cxrs_") and token.key_hash == ApiToken.hash_key(key) and key not in token.key_hash
    assert sender_token_for_key(key=key) == token
    assert client.get(f"/t/{live.trial.code}/hospital/").content.decode().count(key) == 0  # never shown again
    client.post(f"/t/{live.trial.code}/hospital/tokens/{token.pk}/revoke/")
    assert sender_token_for_key(key=key) is None
    assert AuditEvent.objects.filter(action__in=["site.sender_token_created", "site.sender_token_revoked"]).count() == 2
    assert key not in str(list(AuditEvent.objects.values_list("payload", flat=True)))


def test_destinations_are_saved_or_refused_with_a_reason(live, client, investigator):
    client.force_login(investigator)
    url = f"/t/{live.trial.code}/hospital/sites/site-a/destinations/"
    response = client.post(url, {"pacs_ae_title": "HOSP", "pacs_host": "pacs.hospital", "pacs_port": "104",
                                 "pacs_tls": "1", "fhir_base_url": "https://fhir.hospital/r4"}, follow=True)
    assert "are saved" in response.content.decode()
    site = live.sites[0]
    site.refresh_from_db()
    assert (site.pacs_ae_title, site.pacs_port, site.pacs_tls, site.fhir_base_url) == (
        "HOSP", 104, True, "https://fhir.hospital/r4")
    response = client.post(url, {"fhir_base_url": "http://fhir.hospital/r4"}, follow=True)
    assert "HTTPS" in response.content.decode()
    site.refresh_from_db()
    assert site.fhir_base_url == "https://fhir.hospital/r4" and site.pacs_ae_title == "HOSP"  # nothing changed


def test_a_reader_cannot_make_keys_or_set_destinations(live, client):
    client.force_login(live.readers[0])
    assert client.post(f"/t/{live.trial.code}/hospital/sites/site-a/tokens/").status_code == 403
    assert client.post(f"/t/{live.trial.code}/hospital/sites/site-a/destinations/",
                       {"pacs_ae_title": "X", "pacs_host": "h", "pacs_port": "1"}).status_code == 403
    assert not SenderToken.objects.exists()
