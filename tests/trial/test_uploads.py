"""Upload bodies: the role is checked and the size limited before a byte of the body is read or written to disk."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files import uploadhandler
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from tests import dicom_corpus as corpus
from trial.models import Case

BIG = 60_000_000  # the 60 MB of the security review


def _files_under(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()] if Path(root).exists() else []


@pytest.fixture
def upload_tmp(settings, tmp_path):
    """Where Django would write uploads to disk, watched: the folder and every temporary file handler started."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture
def temp_files_started(monkeypatch):
    started: list[str] = []
    original = uploadhandler.TemporaryFileUploadHandler.new_file

    def new_file(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(self.file.temporary_file_path())

    monkeypatch.setattr(uploadhandler.TemporaryFileUploadHandler, "new_file", new_file)
    return started


def _browser(client_class, user) -> tuple[object, dict]:
    """A client logged in with a session, with CSRF enforced as in a browser: the cookie and the header the page's
    script sends."""
    client = client_class(enforce_csrf_checks=True)
    client.force_login(user)
    request = RequestFactory().get("/")
    token = get_token(request)
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    return client, {"HTTP_X_CSRFTOKEN": token}


def _upload(name: str, data: bytes) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def test_outsiders_60_mb_upload_is_refused_before_a_temporary_file_is_written(
        enrolling_trial, site, outsider, upload_tmp, temp_files_started, _media):
    client, headers = _browser(APIClient, outsider)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("big.dcm", bytes(BIG)), "site": "site-a"}, format="multipart", **headers)
    assert r.status_code == 403
    assert temp_files_started == []  # not even opened: the body was never read
    assert _files_under(upload_tmp) == [] and not Case.objects.exists() and _files_under(_media) == []


def test_outsiders_upload_is_refused_with_a_token_too(enrolling_trial, site, outsider, upload_tmp, temp_files_started):
    client = APIClient()
    client.force_authenticate(outsider)  # no session: nothing reads the body before the view
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("big.dcm", bytes(BIG)), "site": "site-a"}, format="multipart")
    assert r.status_code == 403
    assert temp_files_started == [] and _files_under(upload_tmp) == []


def test_investigators_body_over_the_limit_gets_413_and_is_never_written(
        enrolling_trial, site, investigator, upload_tmp, temp_files_started, settings, _media):
    settings.CXR_MAX_DICOM_BYTES = 2_000_000
    client, headers = _browser(APIClient, investigator)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("big.dcm", bytes(BIG)), "site": "site-a"}, format="multipart", **headers)
    assert r.status_code == 413, r.content
    body = r.json()
    assert body["code"] == "too_large"
    assert body["detail"].startswith("The upload is 60.0 MB; the largest file accepted is 2 MB.")
    assert temp_files_started == []
    assert _files_under(upload_tmp) == [] and not Case.objects.exists() and _files_under(_media) == []


def test_a_file_that_grows_past_the_limit_is_stopped_and_its_temporary_file_removed(
        enrolling_trial, site, investigator, upload_tmp, temp_files_started, settings, _media):
    # The body is declared small enough to be read, but the file in it passes the limit as it streams in
    settings.CXR_MAX_DICOM_BYTES = 2_000_000
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100_000  # so that Django streams it to a temporary file
    client, headers = _browser(APIClient, investigator)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("big.dcm", bytes(2_500_000)), "site": "site-a"}, format="multipart", **headers)
    assert r.status_code == 413, r.content
    assert r.json()["code"] == "too_large"
    assert len(temp_files_started) == 1  # it was being written, up to the limit, then stopped
    assert _files_under(upload_tmp) == [] and not Case.objects.exists() and _files_under(_media) == []


def test_investigators_upload_within_the_limit_goes_through_the_session_and_csrf(
        enrolling_trial, site, investigator, upload_tmp):
    client, headers = _browser(APIClient, investigator)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("film.dcm", corpus.radiograph_bytes(seed=60)), "site": "site-a"},
                    format="multipart", **headers)
    assert r.status_code == 201, r.content
    assert Case.objects.count() == 1 and _files_under(upload_tmp) == []


def test_an_upload_without_the_csrf_header_is_refused(enrolling_trial, site, investigator):
    client, _ = _browser(APIClient, investigator)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/",
                    {"file": _upload("film.dcm", corpus.radiograph_bytes(seed=61)), "site": "site-a"},
                    format="multipart")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert not Case.objects.exists()


def test_only_multipart_bodies_are_parsed(enrolling_trial, site, investigator):
    # DRF's JSON and form parsers would read any body into memory whole
    client, headers = _browser(APIClient, investigator)
    r = client.post(f"/api/trials/{enrolling_trial.code}/cases/", {"site": "site-a", "file": "x" * 1000},
                    format="json", **headers)
    assert r.status_code == 415
    assert not Case.objects.exists()


def test_posting_to_the_upload_page_is_refused_without_reading_the_body(
        enrolling_trial, site, outsider, upload_tmp, temp_files_started):
    client, headers = _browser(Client, outsider)
    r = client.post(f"/t/{enrolling_trial.code}/cases/upload/", {"file": _upload("big.dcm", bytes(BIG))}, **headers)
    assert r.status_code == 405
    assert temp_files_started == [] and _files_under(upload_tmp) == []


def test_upload_page_still_gives_the_browser_its_csrf_cookie(enrolling_trial, site, investigator):
    client, _ = _browser(Client, investigator)
    del client.cookies["csrftoken"]
    r = client.get(f"/t/{enrolling_trial.code}/cases/upload/")
    assert r.status_code == 200 and "csrftoken" in r.cookies


def test_the_site_wide_body_limit_keeps_any_other_post_off_the_disk(
        upload_tmp, temp_files_started, settings, outsider):
    # settings.FILE_UPLOAD_HANDLERS with core.uploads.BodyLimitUploadHandler first: the CSRF middleware of any
    # page reads a POSTed form before the view can refuse it
    settings.FILE_UPLOAD_HANDLERS = ["core.uploads.BodyLimitUploadHandler",
                                     "django.core.files.uploadhandler.MemoryFileUploadHandler",
                                     "django.core.files.uploadhandler.TemporaryFileUploadHandler"]
    settings.CXR_MAX_DICOM_BYTES = 2_000_000
    client, headers = _browser(Client, outsider)
    client.post("/", {"file": _upload("big.dcm", bytes(BIG))}, **headers)
    assert temp_files_started == [] and _files_under(upload_tmp) == []
