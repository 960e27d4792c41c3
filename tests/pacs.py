"""Orthanc as the hospital's PACS in tests: a real Orthanc (Debian's orthanc and orthanc-dicomweb packages, GPL, run
as a separate program and spoken to over HTTP and DICOM only) on loopback ports, with its index and storage in the
test's temporary folder. Our DICOM listener is its modality "cxr"; our STOW-RS endpoint, when a test gives one, its
DICOMweb peer "cxr"; a test's modality (AE title MODALITY) may send it films by C-STORE.

    from tests.pacs import orthanc  # noqa: F401  (the fixture: a factory)

    def test_…(orthanc):
        pacs = orthanc(listener_port=port)       # and/or stow_url=live_server.url + "/dicomweb/", stow_token=…
        assert send_from_modality(pacs, film) == [0x0000]        # the modality's C-STORE to Orthanc
        answer = pacs.forward_to("cxr", pacs.instances_in_study(study_uid))    # or pacs.stow_to("cxr", …)
        assert answer.ok, answer.details

What Orthanc 1.10 says when the other side refuses: POST /modalities/{id}/store (Synchronous) answers HTTP 500 with
Details "C-STORE SCU to AET "CXRTRIAL" has failed with DIMSE status 0x0124" (the Error Comment is not passed on), or
"… DUL Association Rejected"; run as a job (Asynchronous), the job ends in State "Failure" with the same text in
ErrorDetails. POST /dicom-web/servers/{id}/stow (Synchronous) answers HTTP 500 "Error encountered within the plugin
engine" whatever went wrong (the reason is in Orthanc's log, Orthanc.log()); it counts as a success only if the
peer's answer lists every instance in its ReferencedSOPSequence (00081199).
"""
from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"
MODALITY_AE = "MODALITY"
LISTENER_AE = "CXRTRIAL"  # settings.CXR_DICOM_AE_TITLE's default
STARTUP_TIMEOUT = 20.0
JOB_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configuration(*, directory: Path, http_port: int, dicom_port: int, ae_title: str = AE_TITLE,
                  listener_port: int | None = None, listener_ae: str = LISTENER_AE, stow_url: str | None = None,
                  stow_token: str | None = None, lua_scripts: tuple[Path, ...] = ()) -> dict:
    """Orthanc's configuration (option names as in Orthanc 1.10's and the DICOMweb plugin 1.7's defaults)."""
    modalities = {
        # Any C-STORE but from a modality named here is refused (DicomAlwaysAllowStore false): the test's modality.
        "modality": {"AET": MODALITY_AE, "Host": "127.0.0.1", "Port": 104, "AllowEcho": True, "AllowStore": True,
                     "AllowFind": False, "AllowMove": False, "AllowGet": False},
    }
    if listener_port is not None:
        modalities["cxr"] = {"AET": listener_ae, "Host": "127.0.0.1", "Port": listener_port}
    dicomweb: dict = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
    if stow_url is not None:
        dicomweb["Servers"] = {"cxr": {
            "Url": stow_url,
            "HttpHeaders": {"Authorization": f"Bearer {stow_token}"} if stow_token else {},
            # Orthanc sends STOW-RS bodies chunked by default; a Django (WSGI) view reads no chunked body (it trusts
            # Content-Length), so the peer gets the length up front.
            "ChunkedTransfers": False,
            "HasDelete": False,
        }}
    storage = str(directory / "storage")
    return {
        "Name": "CXR-Trial test PACS",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "LuaScripts": [str(p) for p in lua_scripts],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # the REST API answers loopback callers only
        "AuthenticationEnabled": False,
        "HttpTimeout": 30,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": modalities,
        "DicomScuTimeout": 10,
        # Each store opens its own association (none is kept for reuse): a refusal at association shows every time.
        "DicomAssociationCloseDelay": 0,
        "DicomWeb": dicomweb,
        "SaveJobs": False,
        "JobsHistorySize": 100,
        "StorageCompression": False,
        "StableAge": 1,
    }


@dataclass(frozen=True)
class Answer:
    """What Orthanc said to a REST call: its HTTP status and JSON body (the finished job's, for a call run as a job)."""
    http_status: int
    body: dict

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300 and self.body.get("State", "Success") == "Success"

    @property
    def details(self) -> str:
        """Orthanc's reason for a failure ("" on success)."""
        if self.ok:
            return ""
        return str(self.body.get("ErrorDetails") or self.body.get("Details") or self.body.get("ErrorDescription")
                   or self.body)


@dataclass
class Orthanc:
    """A running Orthanc: its REST base URL, DICOM port and AE title, and the calls the tests make."""
    url: str
    dicom_port: int
    ae_title: str
    directory: Path
    process: subprocess.Popen = field(repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)

    def get(self, path: str):
        response = requests.get(self.url + path, auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body)
        response = requests.post(self.url + path, data=data, auth=self.auth, timeout=60)
        try:
            payload = response.json()
        except ValueError:
            payload = {"Details": response.text}
        return Answer(response.status_code, payload if isinstance(payload, dict) else {"Content": payload})

    def upload(self, data: bytes) -> str:
        """Store one DICOM file through the REST API (POST /instances); returns Orthanc's instance id."""
        answer = self.post("/instances", data)
        assert answer.ok, f"Orthanc refused the upload: {answer.details}"
        return answer.body["ID"]

    def forward_to(self, modality: str, resources: list[str], *, as_job: bool = False) -> Answer:
        """C-STORE `resources` (Orthanc ids of instances, series, studies or patients) to a DICOM modality of its
        configuration (POST /modalities/{modality}/store): Orthanc's answer, failures included."""
        return self._run(f"/modalities/{modality}/store", {"Resources": list(resources)}, as_job=as_job)

    def stow_to(self, server: str, resources: list[str], *, as_job: bool = False) -> Answer:
        """STOW-RS `resources` to a DICOMweb peer of its configuration (POST /dicom-web/servers/{server}/stow)."""
        return self._run(f"/dicom-web/servers/{server}/stow", {"Resources": list(resources)}, as_job=as_job)

    def _run(self, path: str, body: dict, *, as_job: bool) -> Answer:
        if not as_job:
            return self.post(path, {**body, "Synchronous": True})
        started = self.post(path, {**body, "Asynchronous": True})
        if not started.ok:
            return started
        return self.wait_for_job(started.body["ID"])

    def wait_for_job(self, job_id: str, timeout: float = JOB_TIMEOUT) -> Answer:
        """The job's final state (GET /jobs/{id}: State Success or Failure, with ErrorDetails)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/jobs/{job_id}")
            if job["State"] in ("Success", "Failure") or time.monotonic() > deadline:
                return Answer(200, job)
            time.sleep(0.05)

    def instances_in_study(self, study_uid: str) -> list[str]:
        """Orthanc's ids of the instances it holds of one study (POST /tools/find)."""
        answer = self.post("/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": str(study_uid)}})
        assert answer.ok, answer.details
        return answer.body["Content"]

    def instance_id(self, sop_instance_uid: str) -> str | None:
        answer = self.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": str(sop_instance_uid)}})
        assert answer.ok, answer.details
        found = answer.body["Content"]
        return found[0] if found else None

    def instance_tags(self, instance_id: str) -> dict:
        """The instance's main tags by keyword (GET /instances/{id}/simplified-tags)."""
        return self.get(f"/instances/{instance_id}/simplified-tags")

    def log(self) -> str:
        return (self.directory / "orthanc.log").read_text(errors="replace")


def require_orthanc() -> str:
    path = shutil.which(ORTHANC)
    if path is None or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (Debian packages orthanc and orthanc-dicomweb; "
                    "scripts/system-deps.sh installs them)")
    return path


@contextmanager
def running_orthanc(directory: Path, **options) -> Iterator[Orthanc]:
    """Start Orthanc with configuration(**options) in `directory`, wait for its REST API, stop it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = configuration(directory=directory, http_port=http_port, dicom_port=dicom_port, **options)
    (directory / "config").mkdir()
    (directory / "config" / "orthanc.json").write_text(json.dumps(config, indent=2))
    with orthanc_process(directory, http_port=http_port, dicom_port=dicom_port, ae_title=config["DicomAet"]) as pacs:
        yield pacs


@contextmanager
def orthanc_process(directory: Path, *, http_port: int, dicom_port: int, ae_title: str, env: dict | None = None,
                    auth: tuple[str, str] | None = None) -> Iterator[Orthanc]:
    """Run `Orthanc directory/config/` (every .json file there is read) until the end of the block."""
    executable = require_orthanc()
    with open(directory / "orthanc.log", "wb") as log:
        process = subprocess.Popen([executable, str(directory / "config")], cwd=directory, stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
    pacs = Orthanc(url=f"http://127.0.0.1:{http_port}", dicom_port=dicom_port, ae_title=ae_title,
                   directory=directory, process=process, auth=auth)
    try:
        _wait_until_up(pacs)
        yield pacs
    finally:
        # Killed, not asked to stop: Orthanc 1.10 takes some 3.5 s to stop (its HTTP and DICOM servers' poll loops),
        # and nothing of it outlives the test (its index and storage are in the test's temporary folder).
        process.kill()
        process.wait(timeout=10)


def _wait_until_up(pacs: Orthanc) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if pacs.process.poll() is not None:
            pytest.fail(f"Orthanc exited at start (status {pacs.process.returncode}):\n{pacs.log()[-4000:]}")
        try:
            if requests.get(pacs.url + "/system", auth=pacs.auth, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"Orthanc did not answer within {STARTUP_TIMEOUT:.0f} s:\n{pacs.log()[-4000:]}")
        time.sleep(0.02)


@pytest.fixture
def orthanc(tmp_path):
    """A factory: orthanc(listener_port=…, stow_url=…, stow_token=…, ae_title=…) starts an Orthanc (see
    configuration()) and returns it; every one started is stopped at the end of the test."""
    require_orthanc()
    with ExitStack() as stack:
        started: list[Orthanc] = []

        def start(**options) -> Orthanc:
            pacs = stack.enter_context(running_orthanc(tmp_path / f"orthanc-{len(started)}", **options))
            started.append(pacs)
            return pacs

        yield start


def send_from_modality(pacs: Orthanc, *films: bytes, calling: str = MODALITY_AE) -> list[int]:
    """The modality's C-STORE of `films` to Orthanc over one association: the DIMSE status of each. An association
    that is not accepted fails the test, with Orthanc's log."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in films]
    ae = AE(ae_title=calling)
    contexts: dict[str, set[str]] = {}
    for ds in datasets:
        contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.ae_title)
    if not assoc.is_established:
        pytest.fail(f"Orthanc did not accept the modality's association:\n{pacs.log()[-2000:]}")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
