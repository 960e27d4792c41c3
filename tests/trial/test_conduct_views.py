"""The investigator's Conduct page of a live trial: what it shows (never anything by arm) and the acts it offers,
each through its service (refusals shown, nothing changed)."""
from __future__ import annotations

import pytest

from tests.live import arrive, image, open_trial
from trial.errors import NotEnrolled
from trial.models import AuditEvent, Deviation, Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, code="cv", target_cases=10, settle_seconds=0)
    arrive(live.trial, live.sites[0], image(1))
    with pytest.raises(NotEnrolled):
        arrive(live.trial, live.sites[0], image(2, ViewPosition="LL"))  # screened out, and logged
    return live


def test_the_page_shows_enrolment_screening_readers_and_nothing_by_arm(client, investigator, live):
    client.force_login(investigator)
    page = client.get(f"/t/{live.trial.code}/conduct/").content.decode()
    assert "1 cases enrolled of a target of 10" in page and "2 images screened" in page
    assert "View position not accepted" in page and "view_position" in page
    for member in Membership.objects.filter(trial=live.trial, role="reader"):
        assert member.pseudonym in page
    assert "assisted" not in page.lower() and "standard" not in page.lower()


def test_a_reader_or_an_outsider_cannot_open_it(client, live, outsider):
    reader = live.readers[0]
    for user in (reader, outsider):
        client.force_login(user)
        assert client.get(f"/t/{live.trial.code}/conduct/").status_code == 403
        assert client.post(f"/t/{live.trial.code}/conduct/deviations/", {"description": "x"}).status_code == 403
    assert not Deviation.objects.exists()


def test_each_act_goes_through_its_service_and_a_refusal_changes_nothing(client, investigator, live):
    client.force_login(investigator)
    code, site = live.trial.code, live.sites[0]
    events = AuditEvent.objects.count()
    # pausing a site needs a reason: refused, nothing changed
    r = client.post(f"/t/{code}/conduct/sites/{site.code}/", {"enrolment": "paused", "reason": "",
                                                              "target_cases": ""}, follow=True)
    assert "Say why" in r.content.decode()
    site.refresh_from_db()
    assert site.enrolment == "open" and AuditEvent.objects.count() == events
    client.post(f"/t/{code}/conduct/sites/{site.code}/", {"enrolment": "paused", "reason": "Scanner down",
                                                          "target_cases": "5"})
    site.refresh_from_db()
    assert (site.enrolment, site.enrolment_reason, site.target_cases) == ("paused", "Scanner down", 5)
    # a reader off duty, then withdrawn with a reason
    member = Membership.objects.filter(trial=live.trial, role="reader").first()
    client.post(f"/t/{code}/conduct/readers/{member.pseudonym}/duty/", {"on_duty": "0"})
    member.refresh_from_db()
    assert not member.on_duty
    client.post(f"/t/{code}/conduct/readers/{member.pseudonym}/withdraw/", {"reason": "Left the hospital"})
    member.refresh_from_db()
    assert member.withdrawn_at is not None
    # a deviation the platform could not see, and the site's DICOM senders
    client.post(f"/t/{code}/conduct/deviations/", {"description": "Consent form missing", "reason": "Audit",
                                                   "case": "C0001"})
    assert Deviation.objects.filter(kind="other", case__code="C0001", recorded_by=investigator).exists()
    client.post(f"/t/{code}/conduct/sites/{site.code}/dicom/", {"ae_titles": "PACS_A, MODALITY_1",
                                                                "hosts": "10.0.0.5"})
    site.refresh_from_db()
    assert site.dicom_ae_titles == ["MODALITY_1", "PACS_A"] and site.dicom_hosts == ["10.0.0.5"]
    r = client.post(f"/t/{code}/conduct/sites/{site.code}/dicom/", {"ae_titles": "NOT\\VALID"}, follow=True)
    assert "not a DICOM AE title" in r.content.decode()
    site.refresh_from_db()
    assert site.dicom_ae_titles == ["MODALITY_1", "PACS_A"]


def test_the_reading_dashboard_of_a_live_trial_shows_turnaround_waiting_cases_and_the_scoring_backlog(
        client, investigator, live):
    from trial import services

    services.set_on_duty(membership=Membership.objects.filter(trial=live.trial, role="reader").first(),
                         by=investigator, on_duty=False)
    arrive(live.trial, live.sites[0], image(3))  # one of its arms has nobody on duty: it waits
    client.force_login(investigator)
    page = client.get(f"/t/{live.trial.code}/reading/").content.decode()
    assert 'data-testid="turnaround"' in page and "report signed" in page
    assert 'data-testid="waiting">1<' in page
    assert 'data-testid="scoring-backlog"' in page
    assert "assisted" not in page.lower() and "standard" not in page.lower()


def test_a_readers_roster_is_set_from_the_page_and_a_bad_one_refused(client, investigator, live):
    member = Membership.objects.filter(trial=live.trial, role="reader").first()
    client.force_login(investigator)
    url = f"/t/{live.trial.code}/conduct/readers/{member.pseudonym}/roster/"
    r = client.post(url, {"roster": "mon-fri 8-16", "time_zone": "Europe/Berlin"}, follow=True)
    assert "write days and a shift" in r.content.decode()
    member.refresh_from_db()
    assert member.roster is None
    client.post(url, {"roster": "mon-fri 08:00-16:00", "time_zone": "Europe/Berlin"})
    member.refresh_from_db()
    assert member.roster["fri"] == [["08:00", "16:00"]] and member.site.time_zone == "Europe/Berlin"
    assert "mon 08:00-16:00" in client.get(f"/t/{live.trial.code}/conduct/").content.decode()
