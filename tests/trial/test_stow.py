"""DICOMweb STOW-RS (POST /dicomweb/studies) with a real client: dicomweb-client, or requests with a body written by
hand where a client would never send it. The server is Django's live server, a thread of the test process on the
test database (hence transaction=True); a few tests of the request's framing use Django's test client instead."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.cache import cache
from django.db import OperationalError
from django.test import Client

from tests.live import image, open_trial
from trial import audit, dicomweb_views, ratelimit, services
from trial.models import AuditEvent, Case, CaseIdentity, ScreeningEntry

pytestmark = pytest.mark.django_db(transaction=True)

BOUNDARY = "a1b2c3d4-stow-test"
CT = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
NOW = 1_800_000_030.0  # the middle of a rate-limit window, so that no test straddles two


@pytest.fixture
def sender(investigator, make_user, _media, monkeypatch):
    """An open trial with two sites, and a sender token for the first."""
    cache.clear()
    monkeypatch.setattr(ratelimit, "_now", lambda: NOW)
    live = open_trial(investigator=investigator, make_user=make_user, code="stow", sites=("site-a", "site-b"))
    token, key = services.issue_sender_token(site=live.sites[0], by=investigator, name="PACS router")
    yield live, token, key
    cache.clear()


def _client(live_server, key: str, *, retry: bool = False) -> DICOMwebClient:
    client = DICOMwebClient(url=live_server.url + "/dicomweb", headers={"Authorization": f"Bearer {key}"})
    if retry:
        client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=1)  # 2, 4 ms
    else:
        client.set_http_retry_params(retry=False)
    return client


def _ds(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _body(*files: bytes, kinds=None) -> bytes:
    """A multipart/related body as a careful sender writes it (CRLF, a close delimiter with a line break after)."""
    out = b""
    for i, data in enumerate(files):
        kind = (kinds or {}).get(i, "application/dicom")
        out += f"--{BOUNDARY}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _post(live_server, body: bytes, *, key: str | None, content_type: str = CT, path: str = "/dicomweb/studies",
          **headers) -> requests.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(live_server.url + path, data=body, headers={"Content-Type": content_type, **headers},
                         timeout=60)


def _json(response: requests.Response) -> pydicom.Dataset:
    assert response.headers["Content-Type"] == "application/dicom+json"
    return pydicom.Dataset.from_json(response.json())


def _failures(result: pydicom.Dataset) -> list[tuple[str | None, int]]:
    return [(item.get("ReferencedSOPInstanceUID"), item.FailureReason) for item in result.get("FailedSOPSequence", [])]


def _stow_events() -> list[dict]:
    return [e.payload for e in AuditEvent.objects.filter(action="dicomweb.stow").order_by("id")]


def _media_files(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------------------ films that arrive


def test_films_sent_with_dicomweb_client_are_enrolled_and_routed(sender, live_server):
    live, token, key = sender
    films = [_ds(image(1)), _ds(image(2))]
    result = _client(live_server, key).store_instances(datasets=films)
    assert "FailedSOPSequence" not in result
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in result.ReferencedSOPSequence] == [
        (f.SOPClassUID, f.SOPInstanceUID) for f in films]
    cases = list(Case.objects.filter(trial=live.trial).order_by("arrival_index"))
    assert len(cases) == 2 and {c.site for c in cases} == {live.sites[0]} and {c.enrolled_by for c in cases} == {None}
    assert {e.source for e in ScreeningEntry.objects.filter(case__in=cases)} == {"stow-rs"}
    assert all(c.reads.count() == 2 for c in cases)  # routed at arrival, one reader of each arm
    assert sorted(CaseIdentity.objects.values_list("sop_instance_uid", flat=True)) == sorted(
        str(f.SOPInstanceUID) for f in films)
    (event,) = _stow_events()
    assert event == {"site": "site-a", "token": token.prefix, "http_status": 200, "instances": 2, "stored": 2,
                     "failed": 0, "failures": {}, "bytes": event["bytes"]} and event["bytes"] > 0
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert audit.verify().intact


def test_the_request_audit_event_names_no_uid_and_no_patient(sender, live_server):
    _, _, key = sender
    film = _ds(image(3))
    _client(live_server, key).store_instances(datasets=[film])
    event = AuditEvent.objects.get(action="dicomweb.stow")
    text = json.dumps(event.payload)
    for value in (film.SOPInstanceUID, film.StudyInstanceUID, film.SeriesInstanceUID, film.SOPClassUID,
                  str(film.PatientName), film.PatientID, film.AccessionNumber):
        assert str(value) not in text
    assert event.actor is None and event.object_type == "trial.Site"


def test_a_film_the_trials_rules_exclude_is_screened_out_and_answered_as_a_success(sender, live_server):
    """As over C-STORE: logged in the screening log, and nothing for the PACS to send again."""
    live, _, key = sender
    child = _ds(image(4, PatientAge="012Y", PatientBirthDate=None))  # the default rules take adults only
    result = _client(live_server, key).store_instances(datasets=[child])
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [child.SOPInstanceUID]
    assert "FailedSOPSequence" not in result and not Case.objects.exists()
    entry = ScreeningEntry.objects.get(trial=live.trial)
    assert (entry.outcome, entry.code, entry.source) == ("not_enrolled", "under_age", "stow-rs")


def test_a_film_that_is_not_a_chest_radiograph_fails_with_cannot_understand(sender, live_server):
    """Not a matter of the trial's rules: the platform takes chest radiographs only (trial.dicom), as the listener."""
    live, _, key = sender
    hand = _ds(image(40, BodyPartExamined="HAND"))
    with pytest.raises(requests.HTTPError) as caught:
        _client(live_server, key).store_instances(datasets=[hand])
    assert caught.value.response.status_code == 409
    assert _failures(_json(caught.value.response)) == [(hand.SOPInstanceUID, 0xC000)]
    assert not Case.objects.exists()
    assert ScreeningEntry.objects.get(trial=live.trial).code == "dicom:not_chest"


def test_the_same_film_sent_twice_is_one_case(sender, live_server):
    live, _, key = sender
    client = _client(live_server, key)
    for _ in range(2):
        result = client.store_instances(datasets=[_ds(image(5))])
        assert len(result.ReferencedSOPSequence) == 1 and "FailedSOPSequence" not in result
    assert Case.objects.filter(trial=live.trial).count() == 1


def test_a_corrupt_a_truncated_and_a_non_dicom_part_fail_alone_and_are_not_stored(sender, live_server):
    live, _, key = sender
    good, truncated = _ds(image(6)), image(7)
    corrupt = b"\x00" * 128 + b"DICM" + b"\x13\x37" * 200
    response = _post(live_server, _body(image(6), corrupt, truncated[: len(truncated) // 2], b"{}",
                                        kinds={3: "application/dicom+json"}), key=key)
    assert response.status_code == 202  # some stored, some not
    result = _json(response)
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [good.SOPInstanceUID]
    # the corrupt file and the JSON part have no UIDs to give; the truncated file's header still names its own
    assert _failures(result) == [(None, 0xC000), (_ds(truncated).SOPInstanceUID, 0xC000), (None, 0xC000)]
    assert Case.objects.filter(trial=live.trial).count() == 1
    refused = ScreeningEntry.objects.filter(outcome="not_enrolled").order_by("id")
    assert [e.code.startswith("dicom:") for e in refused] == [True, True]  # the JSON part never reached the trial
    assert _stow_events()[-1]["failures"] == {"C000": 3}


def test_a_request_with_nothing_usable_is_a_conflict(sender, live_server):
    truncated = image(8)
    response = _post(live_server, _body(b"garbage", truncated[:300]), key=sender[2])
    assert response.status_code == 409
    assert [reason for _, reason in _failures(_json(response))] == [0xC000, 0xC000]
    assert not Case.objects.exists()


def test_a_film_of_another_sop_class_is_refused_as_the_listener_refuses_it(sender, live_server):
    ct = _ds(image(9))
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    buffer = io.BytesIO()
    ct.save_as(buffer)
    response = _post(live_server, _body(buffer.getvalue()), key=sender[2])
    assert response.status_code == 409
    assert _failures(_json(response)) == [(ct.SOPInstanceUID, 0x0122)]
    assert not ScreeningEntry.objects.exists()  # refused at the door, as at association


# ------------------------------------------------------------------------------------------ the request refused


@pytest.mark.parametrize("content_type, words", [
    ("application/dicom", "application/dicom is not accepted"),
    (f'multipart/related; type="application/dicom+json"; boundary="{BOUNDARY}"', "not metadata and bulk data"),
    (f"multipart/form-data; boundary={BOUNDARY}", "multipart/form-data is not accepted"),
])
def test_a_body_of_another_media_type_is_unsupported(sender, live_server, content_type, words):
    response = _post(live_server, _body(image(10)), key=sender[2], content_type=content_type)
    assert response.status_code == 415 and words in response.text and "Nothing was stored" in response.text
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()
    assert _stow_events()[-1] == {"site": "site-a", "token": sender[1].prefix, "http_status": 415,
                                  "refused": "unsupported_media_type"}


BROKEN = {
    "cut short": (lambda: _body(image(11))[:-40], CT, "without its close delimiter"),
    "no delimiter": (lambda: image(11), CT, "boundary does not occur"),
    "no part": (lambda: f"--{BOUNDARY}--".encode(), CT, "only its close delimiter"),
    "no boundary": (lambda: _body(image(11)), 'multipart/related; type="application/dicom"', "names no boundary"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_multipart_body_is_a_bad_request(sender, live_server, case):
    body, content_type, words = BROKEN[case]
    response = _post(live_server, body(), key=sender[2], content_type=content_type)
    assert response.status_code == 400 and words in response.text and "Nothing was stored" in response.text
    assert not ScreeningEntry.objects.exists() and not Case.objects.exists()
    assert _stow_events()[-1]["refused"] == "bad_multipart"


def test_an_empty_body_is_a_bad_request(sender, live_server):
    response = _post(live_server, b"", key=sender[2])
    assert response.status_code == 400 and "empty" in response.text


def test_a_client_that_accepts_only_xml_is_told_so(sender, live_server):
    response = _post(live_server, _body(image(12)), key=sender[2], Accept="application/dicom+xml")
    assert response.status_code == 406 and not ScreeningEntry.objects.exists()


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer cxrs_not-a-key", "Basic dXNlcjpwYXNz"])
def test_no_valid_key_is_unauthorized_and_nothing_is_stored_or_audited(sender, live_server, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _post(live_server, _body(image(13)), key=None, **headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not ScreeningEntry.objects.exists() and not _stow_events()


def test_a_revoked_key_is_unauthorized(sender, live_server, investigator):
    _, token, key = sender
    services.revoke_sender_token(token=token, by=investigator)
    response = _post(live_server, _body(image(14)), key=key)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert not ScreeningEntry.objects.exists()


def test_an_address_that_keeps_sending_wrong_keys_is_told_to_slow_down_but_a_valid_key_is_not(sender, live_server):
    for _ in range(dicomweb_views.AUTH_FAILURES_PER_MINUTE):
        assert _post(live_server, b"", key="cxrs_guess").status_code == 401
    refused = _post(live_server, b"", key="cxrs_guess")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert _post(live_server, _body(image(15)), key=sender[2]).status_code == 200


@pytest.mark.parametrize("method", ["get", "head", "put", "delete"])
def test_only_post_is_served(sender, live_server, method):
    response = requests.request(method, live_server.url + "/dicomweb/studies",
                                headers={"Authorization": f"Bearer {sender[2]}"}, timeout=30)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_a_trial_that_receives_nothing_refuses_every_instance(investigator, make_user, _media, live_server):
    cache.clear()
    draft = open_trial(investigator=investigator, make_user=make_user, code="draft", readers_per_site=1, open_=False)
    _, key = services.issue_sender_token(site=draft.sites[0], by=investigator)
    response = _post(live_server, _body(image(16)), key=key)
    assert response.status_code == 409 and [r for _, r in _failures(_json(response))] == [0x0124]
    assert not ScreeningEntry.objects.exists()


def test_a_paused_site_refuses_its_films_as_the_listener_does(sender, live_server, investigator):
    live, _, key = sender
    services.set_site_enrolment(site=live.sites[0], by=investigator, state="paused", reason="Night shift")
    response = _post(live_server, _body(image(17)), key=key)
    assert response.status_code == 409 and [r for _, r in _failures(_json(response))] == [0x0124]
    assert not Case.objects.exists()
    assert ScreeningEntry.objects.get().code == "site_paused"  # in the screening log, as an upload would be


# ------------------------------------------------------------------------------------------ a study named in the URL


def test_an_instance_of_another_study_than_the_url_names_is_refused(sender, live_server):
    live, _, key = sender
    client = _client(live_server, key)
    film = _ds(image(18))
    with pytest.raises(requests.HTTPError) as caught:
        client.store_instances(datasets=[film], study_instance_uid="1.2.826.0.1.3680043.2.99")
    response = caught.value.response
    assert response.status_code == 409
    assert _failures(_json(response)) == [(film.SOPInstanceUID, 0xC409)]
    assert not Case.objects.exists() and not ScreeningEntry.objects.exists()
    result = client.store_instances(datasets=[film], study_instance_uid=film.StudyInstanceUID)
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [film.SOPInstanceUID]
    assert Case.objects.filter(trial=live.trial).count() == 1


# ------------------------------------------------------------------------------------------ faults


def test_the_database_failing_while_a_film_arrives_tells_the_sender_to_retry_and_stores_nothing(
        sender, live_server, monkeypatch, _media):
    live, _, key = sender

    def down(self, *args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Case, "save", down)  # inside receive_image's transaction, after the files were written
    film = _ds(image(19))
    with pytest.raises(requests.HTTPError) as caught:
        _client(live_server, key).store_instances(datasets=[film])
    response = caught.value.response
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert _failures(_json(response)) == [(film.SOPInstanceUID, 0xA700)]
    assert not Case.objects.exists() and not CaseIdentity.objects.exists()
    assert not [p for p in _media_files(_media) if p.suffix in (".dcm", ".png")]  # its files were removed
    assert _stow_events()[-1]["failures"] == {"A700": 1} and _stow_events()[-1]["http_status"] == 503


def test_a_sender_that_retries_after_the_database_is_back_gets_its_film_stored(sender, live_server, monkeypatch):
    live, _, key = sender
    save, calls = Case.save, []

    def down_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("the database system is starting up")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Case, "save", down_once)
    result = _client(live_server, key, retry=True).store_instances(datasets=[_ds(image(20))])
    assert len(result.ReferencedSOPSequence) == 1 and "FailedSOPSequence" not in result
    assert Case.objects.filter(trial=live.trial).count() == 1
    assert [e["http_status"] for e in _stow_events()] == [503, 200]


def test_the_database_down_when_the_key_is_checked_is_a_retry_later(sender, live_server, monkeypatch):
    def down(**kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(dicomweb_views.selectors, "sender_token_for_key", down)
    response = _post(live_server, _body(image(21)), key=sender[2])
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "send again later" in response.text and not ScreeningEntry.objects.exists()


def test_a_mixed_answer_when_one_film_meets_the_database_down(sender, live_server, monkeypatch):
    live, _, key = sender
    save, calls = Case.save, []

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("connection lost")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Case, "save", second_fails)
    response = _post(live_server, _body(image(22), image(23)), key=key)
    assert response.status_code == 202
    assert _failures(_json(response)) == [(_ds(image(23)).SOPInstanceUID, 0xA700)]
    assert Case.objects.filter(trial=live.trial).count() == 1


def test_an_unexpected_fault_with_one_film_fails_that_film_alone(sender, live_server, monkeypatch):
    live, _, key = sender
    store, calls = dicomweb_views.listener.store, []

    def breaks_on_the_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return store(**kwargs)

    monkeypatch.setattr(dicomweb_views.listener, "store", breaks_on_the_second)
    response = _post(live_server, _body(image(34), image(35)), key=key)
    assert response.status_code == 202
    assert _failures(_json(response)) == [(_ds(image(35)).SOPInstanceUID, 0x0110)]
    assert Case.objects.filter(trial=live.trial).count() == 1


# ------------------------------------------------------------------------------------------ limits


def test_a_site_over_its_rate_limit_is_told_when_to_send_again_and_nothing_is_stored(
        sender, live_server, settings, investigator, monkeypatch):
    live, token, key = sender
    settings.CXR_INBOUND_PER_MINUTE = 2
    client = _client(live_server, key)
    client.store_instances(datasets=[_ds(image(24))])
    client.store_instances(datasets=[_ds(image(25))])
    for _ in range(2):
        response = _post(live_server, _body(image(26)), key=key)
        assert response.status_code == 429 and response.headers["Retry-After"] == "30"  # NOW is mid-window
    assert ScreeningEntry.objects.count() == 2  # the refused film left no trace in the trial
    # the first refusal of the window is audited, not every one
    assert [e.get("refused") for e in _stow_events()] == [None, None, "rate_limited"]
    # another site's sender has its own count
    _, other_key = services.issue_sender_token(site=live.sites[1], by=investigator)
    assert _post(live_server, _body(image(26)), key=other_key).status_code == 200
    # the next minute, the first site may send again
    monkeypatch.setattr(ratelimit, "_now", lambda: NOW + 60)
    assert _post(live_server, _body(image(27)), key=key).status_code == 200


def _django_post(body, key: str, **extra):
    # CSRF checks on, as in the real server: a token, not a cookie, authenticates a sender
    return Client(enforce_csrf_checks=True).generic("POST", "/dicomweb/studies", data=body, content_type=CT,
                                                    CONTENT_TYPE=CT, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


class _Unread(io.BytesIO):
    def read(self, *args):
        raise AssertionError("the body was read")


def test_a_body_over_the_limit_is_refused_before_it_is_read(sender, settings):
    settings.CXR_STOW_MAX_BYTES = 10_000
    response = _django_post(_body(image(28)), sender[2], **{"wsgi.input": _Unread()})
    assert response.status_code == 413 and "over" in response.content.decode()
    assert not ScreeningEntry.objects.exists()
    assert _stow_events()[-1]["refused"] == "too_large"


def test_more_instances_than_allowed_in_one_request_is_refused(sender, settings):
    settings.CXR_STOW_MAX_INSTANCES = 1
    response = _django_post(_body(image(29), image(30)), sender[2])
    assert response.status_code == 413 and "More than 1 instances" in response.content.decode()
    assert not ScreeningEntry.objects.exists()


def test_a_large_body_is_spooled_to_disk_and_stored(sender, settings, monkeypatch):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 4096  # smaller than one film: the body goes to a file, mapped
    live, spooled = sender[0], []
    temporary_file = dicomweb_views.tempfile.TemporaryFile
    monkeypatch.setattr(dicomweb_views.tempfile, "TemporaryFile",
                        lambda **kwargs: spooled.append(temporary_file(**kwargs)) or spooled[-1])
    response = _django_post(_body(image(31), image(32)), sender[2])
    assert response.status_code == 200, response.content
    assert len(spooled) == 1 and spooled[0].closed  # one file, removed once the request was done
    assert Case.objects.filter(trial=live.trial).count() == 2


def test_a_chunked_body_is_read_where_the_server_decodes_it(sender):
    body = _body(image(33))
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(body)}
    response = _django_post(b"", sender[2], **chunked, **{"wsgi.input_terminated": True})  # gunicorn says so
    assert response.status_code == 200, response.content
    chunked["wsgi.input"] = io.BytesIO(body)
    response = _django_post(b"", sender[2], **chunked)  # a server that hands over the chunks' framing
    assert response.status_code == 411
    assert Case.objects.count() == 1

