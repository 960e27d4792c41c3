"""trial.dicomweb, the pure half of STOW-RS: the request's Content-Type, its multipart/related body taken apart, the
UIDs a file names, and the Store Instances Response (PS3.18 10.5.3, Annex I) with its HTTP status."""
from __future__ import annotations

import mmap
import tempfile

import pydicom
import pytest
from dicomweb_client.web import DICOMwebClient

from tests import dicom_corpus as corpus
from trial import dicomweb
from trial.dicomweb import BadRequest, InstanceResult, TooManyParts, UnsupportedMediaType

BOUNDARY = "0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"
CT = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def _file(seed: int = 1) -> bytes:
    return corpus.radiograph_bytes(seed=seed, rows=64, columns=48)


def _contents(body: bytes, boundary: str = BOUNDARY, **kwargs) -> list[bytes]:
    return [body[p.start:p.end] for p in dicomweb.split_parts(body, boundary, **kwargs)]


# ------------------------------------------------------------------------------------------ the Content-Type


@pytest.mark.parametrize("content_type", [
    CT,
    f"multipart/related; type=application/dicom; boundary={BOUNDARY}",       # PS3.18 allows the type unquoted
    f'Multipart/Related; TYPE="Application/DICOM"; Boundary="{BOUNDARY}"',   # names and types are case-insensitive
    f'multipart/related;type="application/dicom";boundary={BOUNDARY};start="<1@x>"',
    f'multipart/related; type="application/dicom; transfer-syntax=1.2.840.10008.1.2.1"; boundary="{BOUNDARY}"',
    f"multipart/related; boundary={BOUNDARY}",                                # no type: each part names its own
])
def test_the_boundary_of_a_stow_request(content_type):
    assert dicomweb.boundary_of(content_type) == BOUNDARY


def test_a_quoted_boundary_may_hold_a_semicolon_and_an_escaped_quote():
    media = dicomweb.parse_media_type('multipart/related; boundary="a;b\\"c"; type=application/dicom')
    assert media.params == {"boundary": 'a;b"c', "type": "application/dicom"}


@pytest.mark.parametrize("content_type, words", [
    ("", "no Content-Type"),
    ("application/dicom", "application/dicom is not accepted"),
    (f"multipart/form-data; boundary={BOUNDARY}", "multipart/form-data is not accepted"),
    (f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}', "not metadata and bulk data"),
    (f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}', "not metadata and bulk data"),
    ("not a media type", "is not a media type"),
])
def test_anything_but_multipart_related_of_dicom_is_an_unsupported_media_type(content_type, words):
    with pytest.raises(UnsupportedMediaType, match=words) as caught:
        dicomweb.boundary_of(content_type)
    assert caught.value.status == 415


@pytest.mark.parametrize("content_type, words", [
    ('multipart/related; type="application/dicom"', "names no boundary"),
    ('multipart/related; type="application/dicom"; boundary=""', "names no boundary"),
    (f'multipart/related; type="application/dicom"; boundary="{"x" * 201}"', "not a valid multipart boundary"),
    ('multipart/related; type="application/dicom"; boundary="ends with a space "', "not a valid multipart boundary"),
])
def test_a_missing_or_invalid_boundary_is_a_bad_request(content_type, words):
    with pytest.raises(BadRequest, match=words) as caught:
        dicomweb.boundary_of(content_type)
    assert caught.value.status == 400


@pytest.mark.parametrize("accept, ok", [
    ("", True), ("*/*", True), ("application/dicom+json", True), ("application/json", True),
    ("application/*;q=0.2", True), ("application/dicom+xml, application/dicom+json;q=0.5", True),
    ("application/dicom+xml", False), ("application/dicom+json;q=0", False), ("text/html", False),
])
def test_the_response_is_acceptable_unless_the_client_wants_another_type_only(accept, ok):
    assert dicomweb.accepts_dicom_json(accept) is ok


# ------------------------------------------------------------------------------------------ the body


def test_a_body_as_dicomweb_client_writes_it():
    """Its parts begin after a leading CRLF, and the close delimiter has no line break after it."""
    files = [_file(1), _file(2)]
    body = DICOMwebClient._encode_multipart_message(files, CT)
    assert body.startswith(b"\r\n--") and body.endswith(b"--")
    parts = dicomweb.split_parts(body, dicomweb.boundary_of(CT))
    assert [body[p.start:p.end] for p in parts] == files
    assert [p.index for p in parts] == [1, 2] and all(p.is_dicom and not p.refusal() for p in parts)
    assert parts[0].headers == {"content-type": "application/dicom"}


def test_content_ending_in_line_breaks_keeps_them():
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nAB\r\n\r\n\r\n"
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n\r\nCD\r\n--{BOUNDARY}--\r\n").encode()
    assert _contents(body) == [b"AB\r\n\r\n", b"\r\nCD"]


def test_a_preamble_an_epilogue_and_transport_padding_are_ignored():
    body = (f"This is a preamble.\r\n--{BOUNDARY}  \t\r\nContent-Type: application/dicom\r\n\r\nONE"
            f"\r\n--{BOUNDARY}\t\r\nContent-Type: application/dicom\r\n\r\nTWO"
            f"\r\n--{BOUNDARY}--  \r\nAn epilogue, with --{BOUNDARY} in it.\r\n").encode()
    assert _contents(body) == [b"ONE", b"TWO"]


def test_bare_line_feeds_are_taken_as_line_breaks():
    body = (f"--{BOUNDARY}\nContent-Type: application/dicom\n\nONE\n--{BOUNDARY}\n"
            f"Content-Type: application/dicom\n\nTWO\n--{BOUNDARY}--").encode()
    assert _contents(body) == [b"ONE", b"TWO"]


def test_the_boundary_at_the_start_of_a_longer_line_is_not_a_delimiter():
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nA\r\n--{BOUNDARY}X is data\r\nB"
            f"\r\n--{BOUNDARY}--").encode()
    assert _contents(body) == [f"A\r\n--{BOUNDARY}X is data\r\nB".encode()]


def test_a_part_without_headers_is_taken_as_dicom_and_folded_headers_are_unfolded():
    body = (f"--{BOUNDARY}\r\n\r\nRAW\r\n--{BOUNDARY}\r\nContent-Type: application/dicom;\r\n"
            f" transfer-syntax=1.2.840.10008.1.2.1\r\nContent-ID: <2@x>\r\n\r\nFOLDED\r\n--{BOUNDARY}--").encode()
    first, second = dicomweb.split_parts(body, BOUNDARY)
    assert first.is_dicom and first.headers == {} and body[first.start:first.end] == b"RAW"
    assert second.is_dicom and second.media_type.params == {"transfer-syntax": "1.2.840.10008.1.2.1"}
    assert second.headers["content-id"] == "<2@x>" and body[second.start:second.end] == b"FOLDED"


def test_a_part_of_another_type_or_encoding_is_returned_to_be_refused_alone():
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom+json\r\n\r\n{{}}"
            f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD"
            f"\r\n--{BOUNDARY}\r\nContent-Type: ???\r\n\r\nX"
            f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nOK"
            f"\r\n--{BOUNDARY}--").encode()
    parts = dicomweb.split_parts(body, BOUNDARY)
    assert [p.is_dicom for p in parts] == [False, False, False, True]
    assert parts[0].refusal() == "Part 1 is application/dicom+json, not application/dicom."
    assert "base64" in parts[1].refusal() and "only binary" in parts[1].refusal()
    assert parts[2].refusal() == "Part 3: its Content-Type cannot be read."
    assert parts[3].refusal() == "" and body[parts[3].start:parts[3].end] == b"OK"


def test_a_part_whose_headers_never_end_is_refused_alone():
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\nno blank line"
            f"\r\n--{BOUNDARY}--").encode()
    (part,) = dicomweb.split_parts(body, BOUNDARY)
    assert not part.is_dicom and part.refusal() == "Part 1 has no blank line after its headers."


@pytest.mark.parametrize("body, words", [
    (b"", "The body is empty"),
    (b"just some bytes", "its boundary does not occur in it"),
    (f"--{BOUNDARY}-x".encode(), "its boundary does not occur in it"),
    (f"--{BOUNDARY}--\r\n".encode(), "only its close delimiter"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDATA".encode(), "without its close delimiter"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--{BOUNDARY}".encode(),
     "without its close delimiter"),
    (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--{BOUNDARY}\r\n".encode(),
     "without its close delimiter"),
    (f"--{BOUNDARY}".encode(), "without its close delimiter"),
])
def test_a_broken_body_is_a_bad_request(body, words):
    with pytest.raises(BadRequest, match=words):
        dicomweb.split_parts(body, BOUNDARY)


def test_more_parts_than_allowed_is_refused_before_the_next_is_read():
    body = DICOMwebClient._encode_multipart_message([b"1", b"2", b"3"], CT)
    assert len(dicomweb.split_parts(body, BOUNDARY, max_parts=3)) == 3
    with pytest.raises(TooManyParts, match="More than 2 instances") as caught:
        dicomweb.split_parts(body, BOUNDARY, max_parts=2)
    assert caught.value.status == 413


def test_a_body_spooled_to_a_file_is_split_in_place():
    files = [_file(1), _file(2)]
    body = DICOMwebClient._encode_multipart_message(files, CT)
    with tempfile.TemporaryFile() as fh:
        fh.write(body)
        fh.flush()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert _contents(mapped) == files


# ------------------------------------------------------------------------------------------ an instance's UIDs


def test_the_uids_of_a_file_come_from_its_header():
    ds = corpus.radiograph_dataset(seed=3, rows=64, columns=48)
    data = corpus.to_bytes(ds)
    expected = (str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.StudyInstanceUID))
    for variant in (data, data[128:], data[: len(data) // 2]):  # whole; preamble dropped; cut short in its pixels
        uids = dicomweb.instance_uids(variant)
        assert (uids.sop_class_uid, uids.sop_instance_uid, uids.study_instance_uid) == expected and uids.readable


@pytest.mark.parametrize("data", [b"", b"not a dicom file at all", bytes(128) + b"DICM" + b"\xff" * 40])
def test_a_file_that_cannot_be_read_has_no_uids(data):
    assert dicomweb.instance_uids(data) == dicomweb.InstanceUIDs() and not dicomweb.InstanceUIDs().readable


def test_a_value_that_is_not_a_uid_is_not_echoed_back():
    ds = corpus.radiograph_dataset(seed=4, rows=64, columns=48)
    ds.StudyInstanceUID = "1.2.3"
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom says so, and writes it all the same
        ds.SOPInstanceUID = "Mr Smith"  # not a UID: never repeated in a response
        data = corpus.to_bytes(ds)
    assert b"Mr Smith" in data
    uids = dicomweb.instance_uids(data)
    assert uids.study_instance_uid == "1.2.3" and uids.sop_instance_uid is None and not uids.readable


# ------------------------------------------------------------------------------------------ the response

CR = "1.2.840.10008.5.1.4.1.1.1"


def _ok(n: int) -> InstanceResult:
    return InstanceResult(CR, f"1.2.3.{n}")


def _failed(n: int, reason: int) -> InstanceResult:
    return InstanceResult(CR, f"1.2.3.{n}", reason)


@pytest.mark.parametrize("results, status", [
    ([_ok(1), _ok(2)], 200),
    ([_ok(1), _failed(2, 0xC000)], 202),
    ([_ok(1), _failed(2, 0xA700)], 202),
    ([_failed(1, 0xC000), _failed(2, 0xC409)], 409),
    ([_failed(1, 0xA700), _failed(2, 0xC000)], 409),   # "a mixture of reasons"
    ([_failed(1, 0xA700), _failed(2, 0xA7FF)], 503),   # nothing stored, all for want of resources: retry later
    ([_failed(1, 0x0124)], 409),
])
def test_the_http_status_follows_ps3_18_table_10_5_3_1(results, status):
    assert dicomweb.http_status(results) == status


def test_the_response_is_the_store_instances_response_module_in_dicom_json():
    results = [_ok(1), _failed(2, 0xC000), InstanceResult(None, None, 0xC000)]
    body = dicomweb.response_body(results)
    assert list(body) == ["00081190", "00081198", "00081199"]  # tag order
    assert body["00081190"] == {"vr": "UR"}  # type 2: present, empty (no retrieval here)
    assert body["00081199"] == {"vr": "SQ", "Value": [
        {"00081150": {"vr": "UI", "Value": [CR]}, "00081155": {"vr": "UI", "Value": ["1.2.3.1"]},
         "00081190": {"vr": "UR"}}]}
    assert body["00081198"] == {"vr": "SQ", "Value": [
        {"00081150": {"vr": "UI", "Value": [CR]}, "00081155": {"vr": "UI", "Value": ["1.2.3.2"]},
         "00081197": {"vr": "US", "Value": [0xC000]}},
        {"00081197": {"vr": "US", "Value": [0xC000]}}]}  # an unreadable part: no UIDs made up
    ds = pydicom.Dataset.from_json(body)  # what a client (dicomweb-client) does with it
    assert [item.ReferencedSOPInstanceUID for item in ds.ReferencedSOPSequence] == ["1.2.3.1"]
    assert [item.FailureReason for item in ds.FailedSOPSequence] == [0xC000, 0xC000]


def test_a_response_leaves_out_the_sequence_it_has_no_item_for():
    assert set(dicomweb.response_body([_ok(1)])) == {"00081190", "00081199"}
    assert set(dicomweb.response_body([_failed(1, 0xA700)])) == {"00081190", "00081198"}


def test_failures_are_counted_by_reason():
    results = [_ok(1), _failed(2, 0xC000), _failed(3, 0xC000), _failed(4, 0xA700)]
    assert dicomweb.failure_counts(results) == {"A700": 1, "C000": 2}
