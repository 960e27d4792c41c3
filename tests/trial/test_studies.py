"""A case is a study, not a file: the first frontal image of a study opens its case; the study's other images (a
lateral, a repeat) join it, also after the case was routed (added and logged); an image that arrives before any
frontal image of its study waits for one (staged) and is screened out by the view rule if its study settles without
one. One case per study also when two of its images arrive at once (PostgreSQL: two threads)."""
from __future__ import annotations

import io
import threading
from datetime import timedelta

import pydicom
import pytest
from django.db import connection

from core import clock
from reading.models import Read
from tests.live import another_view, arrive, committed, image, open_trial
from trial import services
from trial.errors import DuplicateImage
from trial.models import AuditEvent, Case, CaseImage, ScreeningEntry

pytestmark = pytest.mark.django_db


def _study_of(data: bytes) -> dict:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {"StudyInstanceUID": ds.StudyInstanceUID, "SeriesInstanceUID": ds.SeriesInstanceUID}


@pytest.fixture
def live(investigator, make_user):
    return open_trial(investigator=investigator, make_user=make_user, code="study", settle_seconds=60)


def test_a_lateral_after_its_frontal_joins_the_case_after_routing_and_is_logged(live):
    site = live.sites[0]
    frontal = image(1)
    case = arrive(live.trial, site, frontal)
    assert case.reads.count() == 2  # routed at arrival
    joined = arrive(live.trial, site, another_view(2, of=frontal))
    assert joined == case
    (lateral,) = case.images.all()
    assert lateral.view_position == "LL" and lateral.added_at is not None
    assert Case.objects.filter(trial=live.trial).count() == 1 and case.reads.count() == 2  # no second case, no read
    # stored de-identified under the case's code, in the de-identified study of the primary image
    stored = pydicom.dcmread(lateral.dicom.open("rb"))
    primary = pydicom.dcmread(case.dicom.open("rb"))
    assert stored.PatientID == case.code and stored.StudyInstanceUID == primary.StudyInstanceUID
    assert stored.SOPInstanceUID != primary.SOPInstanceUID
    assert lateral.original_sop_instance_uid == pydicom.dcmread(io.BytesIO(another_view(2, of=frontal))).SOPInstanceUID
    entries = ScreeningEntry.objects.filter(trial=live.trial).order_by("id")
    assert [(e.outcome, e.case_id) for e in entries] == [("enrolled", case.pk), ("added", case.pk)]
    event = AuditEvent.objects.get(action="case.image_added")
    assert event.payload["seconds_after_case"] >= 0 and event.payload["code"] == case.code
    assert lateral.values_image  # the viewer's values image was made (eager task)


def test_a_lateral_before_its_frontal_waits_then_joins_under_the_cases_code(live):
    site = live.sites[0]
    frontal = image(3)
    assert arrive(live.trial, site, another_view(4, of=frontal)) is None  # staged
    staged = CaseImage.objects.get()
    assert staged.case is None and pydicom.dcmread(staged.dicom.open("rb")).PatientID == services.STAGED_CODE
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()
    case = arrive(live.trial, site, frontal)
    staged.refresh_from_db()
    assert staged.case == case and pydicom.dcmread(staged.dicom.open("rb")).PatientID == case.code
    assert case.view_position == "PA"  # the frontal image is the primary (the AI drafts from it)
    assert sorted(ScreeningEntry.objects.values_list("outcome", flat=True)) == ["added", "enrolled"]
    assert services.settle_studies() == 0  # nothing left staged


def test_a_study_without_a_frontal_image_is_screened_out_when_it_settles(live):
    site = live.sites[0]
    frontal = image(5)  # never sent
    assert arrive(live.trial, site, another_view(6, of=frontal)) is None
    assert arrive(live.trial, site, another_view(7, of=frontal)) is None
    assert services.settle_studies() == 0  # still within the window
    CaseImage.objects.update(received_at=clock.now() - timedelta(seconds=61))
    with committed():
        assert services.settle_studies() == 2
    assert not CaseImage.objects.exists() and not Case.objects.exists()
    entries = ScreeningEntry.objects.filter(trial=live.trial)
    assert entries.count() == 2 and set(entries.values_list("outcome", "code")) == {("not_enrolled", "view_position")}
    assert "no frontal image in the study" in entries.first().reason


def test_a_resent_lateral_is_a_duplicate_and_another_study_is_another_case(live):
    site = live.sites[0]
    frontal = image(8)
    case = arrive(live.trial, site, frontal)
    lateral = another_view(9, of=frontal)
    arrive(live.trial, site, lateral)
    with pytest.raises(DuplicateImage):
        arrive(live.trial, site, lateral)
    other = arrive(live.trial, site, image(10))
    assert other != case and case.images.count() == 1 and other.images.count() == 0


def test_a_repeat_frontal_of_the_same_study_is_added_not_excluded_as_a_repeat(investigator, make_user):
    from trial.dicom import EligibilityRules

    live = open_trial(investigator=investigator, make_user=make_user, code="study-rep",
                      eligibility=EligibilityRules(repeat_window_days=30).to_dict())
    frontal = image(11)
    case = arrive(live.trial, live.sites[0], frontal)
    again = image(12, **_study_of(frontal))  # a second PA of the same study (a repeat exposure)
    assert arrive(live.trial, live.sites[0], again) == case
    assert case.images.get().view_position == "PA"


def test_the_report_sent_back_references_every_image_of_the_study(live):
    from trial import outbox
    from trial.models import Release

    site = live.sites[0]
    frontal = image(13)
    case = arrive(live.trial, site, frontal)
    arrive(live.trial, site, another_view(14, of=frontal))
    release = Release(case=case, version=1, source="standard", findings="f", impression="i", signer_name="Dr S",
                      signed_at=clock.now(), sr_series_instance_uid="2.25.1", sr_sop_instance_uid="2.25.2")
    message = outbox.outbound_report(release)
    originals = {pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID for d in (frontal, another_view(14, of=frontal))}
    assert {i.sop_instance_uid for i in message.images} == originals
    assert message.study_instance_uid == _study_of(frontal)["StudyInstanceUID"]


@pytest.mark.django_db(transaction=True)
def test_two_images_of_one_study_arriving_at_once_make_one_case(investigator, make_user, _media):
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once need PostgreSQL (SQLite serializes every write)")
    live = open_trial(investigator=investigator, make_user=make_user, code="study-race", settle_seconds=60)
    frontal = image(15)
    second = image(16, **_study_of(frontal))  # two frontal films of one study
    barrier, results, errors = threading.Barrier(2), [], []

    def send(data):
        from django.db import connection as thread_connection
        try:
            barrier.wait()
            results.append(services.receive_image(trial=live.trial, site=live.sites[0], data=data, source="dicom"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=send, args=(d,)) for d in (frontal, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert Case.objects.filter(trial=live.trial).count() == 1
    case = Case.objects.get(trial=live.trial)
    assert results == [case, case] and case.images.count() == 1
    assert Read.objects.filter(case=case).count() in (0, 2)  # routed once (events run on commit, elsewhere)


def test_files_no_case_names_are_removed_once_old(live, settings):
    """What an enrolment killed between writing its files and committing leaves behind (tests/integration/
    test_listener_killed.py kills the listener for real); a file just written may belong to an enrolment in progress."""
    import os
    import time
    from pathlib import Path

    case = arrive(live.trial, live.sites[0], image(17))
    media = Path(settings.MEDIA_ROOT)
    orphan = media / "trials" / str(live.trial.pk) / "cases" / "C9999" / "image.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind")
    fresh = orphan.with_name("display.png")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    for field in (case.dicom, case.display_image, case.thumbnail):
        os.utime(media / field.name, (old, old))
    assert services.remove_orphan_files() == 1
    assert not orphan.exists() and fresh.exists()
    assert all((media / f.name).exists() for f in (case.dicom, case.display_image, case.thumbnail))


def test_the_conduct_page_counts_images_added_and_waiting(live, client, investigator):
    frontal = image(18)
    arrive(live.trial, live.sites[0], frontal)
    arrive(live.trial, live.sites[0], another_view(19, of=frontal))
    arrive(live.trial, live.sites[0], another_view(20, of=image(21)))  # its frontal film never comes
    client.force_login(investigator)
    page = client.get(f"/t/{live.trial.code}/conduct/").content.decode()
    # the waiting image has no screening row yet: its study is decided when a frontal film comes or it settles
    assert "2 images screened, 1 of them added to their study's case" in page
    assert "1 waiting for a frontal image of their study" in page
