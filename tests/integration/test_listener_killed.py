"""The DICOM listener killed (SIGKILL) in the middle of an association, as a machine that loses power: the PACS's retry
of every film of the association enrols each film exactly once, and nothing half-written remains — no case without
its files, and no file without its case once the sweep of leftover files has run. The listener runs as production
runs it (`manage.py dicom_listener`, its own process) on the test's PostgreSQL database (two processes cannot share
SQLite's in-memory test database)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from django.db import connection
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage, Verification

from tests.live import image, open_trial
from tests.pacs import free_port
from trial import services
from trial.models import Case, CaseImage, ScreeningEntry

pytestmark = [pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
FILMS = 12


def _start_listener(port: int, media: Path, anchor: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {**os.environ, "CXR_DEVELOPMENT": "1", "CXR_MEDIA_ROOT": str(media), "CXR_AUDIT_ANCHOR_FILE": anchor,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_TASK_ALWAYS_EAGER": "1"}
    process = subprocess.Popen([sys.executable, "manage.py", "dicom_listener", "--host", "127.0.0.1", "--port",
                                str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ae = AE(ae_title="PACS_K")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAL")
        if assoc.is_established:
            assoc.release()
            return process
        if process.poll() is not None:
            pytest.fail(f"the listener exited: {process.stdout.read().decode()[-3000:]}")
        time.sleep(0.3)
    process.kill()
    pytest.fail("the listener did not start")


def _send_all(port: int, films: list[bytes]) -> list[int | None]:
    """One association, the films one after the other; None for each film with no answer (the association died)."""
    ae = AE(ae_title="PACS_K")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(ComputedRadiographyImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRTRIAL")
    statuses: list[int | None] = []
    for data in films:
        if not assoc.is_established:
            statuses.append(None)
            continue
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(data)))
        statuses.append(int(status.Status) if status and "Status" in status else None)
    if assoc.is_established:
        assoc.release()
    return statuses


def test_the_pacs_retry_after_the_listener_was_killed_enrols_each_film_once(investigator, make_user, _media):
    if connection.vendor != "postgresql":
        pytest.skip("the listener runs as its own process: it needs the PostgreSQL test database")
    live = open_trial(investigator=investigator, make_user=make_user, code="killed")
    services.set_site_dicom_senders(site=live.sites[0], by=investigator, ae_titles=["PACS_K"])
    films = [image(40 + i) for i in range(FILMS)]
    port = free_port()
    media = Path(_media)
    listener = _start_listener(port, media, settings.AUDIT_ANCHOR_FILE)
    first: list = []
    sender = threading.Thread(target=lambda: first.extend(_send_all(port, films)))
    sender.start()
    deadline = time.monotonic() + 120
    while Case.objects.filter(trial=live.trial).count() < FILMS // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    listener.send_signal(signal.SIGKILL)  # mid-association, most likely mid-film
    listener.wait()
    sender.join(timeout=60)
    stored_before_retry = Case.objects.filter(trial=live.trial).count()
    assert FILMS // 3 <= stored_before_retry < FILMS and None in first

    listener = _start_listener(port, media, settings.AUDIT_ANCHOR_FILE)
    try:
        retry = _send_all(port, films)  # the PACS sends the whole association again
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    assert retry == [0x0000] * FILMS  # stored now, or already stored: success either way
    cases = Case.objects.filter(trial=live.trial)
    assert cases.count() == FILMS  # each film once
    enrolled = ScreeningEntry.objects.filter(trial=live.trial, outcome="enrolled")
    assert enrolled.count() == FILMS and sorted(enrolled.values_list("case_id", flat=True)) == sorted(
        cases.values_list("pk", flat=True))
    # nothing half-written: no row without its files (files are written before the rows commit), and the files an
    # enrolment killed before its commit left behind are removed by the daily sweep (here at once: nothing is in
    # progress now)
    services.remove_orphan_files(older_than=timedelta(0))
    referenced = set()
    for case in cases:
        referenced |= {case.dicom.name, case.display_image.name, case.thumbnail.name}
        if case.values_image:
            referenced.add(case.values_image.name)
    for row in CaseImage.objects.filter(trial=live.trial):
        referenced |= {row.dicom.name, row.display_image.name, row.thumbnail.name}
    on_disk = {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}
    assert on_disk == referenced, sorted(on_disk ^ referenced)
