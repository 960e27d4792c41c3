"""Load and faults on the real HTTP stack and PostgreSQL: 20 readers autosaving and submitting at once, and
the database restarted while a reader types in a real browser."""
from __future__ import annotations

import concurrent.futures
import http.cookiejar
import json
import os
import queue
import random
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count

from reading.models import Read, ReadStatus, Report, ReportDraft
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, login
from tests.reading.conftest import build_trial  # noqa: F401 - the fixture
from trial import audit
from trial.models import AuditEvent

pytestmark = pytest.mark.integration

LOAD_SECONDS = float(os.environ.get("CXR_LOAD_SECONDS", "60"))
N_READERS = 20
READS_PER_READER = 4
MAX_SAVES_PER_READ = 200  # a bound on the loop whatever the clock does
HTTP_TIMEOUT = 30
# Waiting for another test run to stop using the shared PostgreSQL before restarting it.
OTHER_RUN_WAIT_SECONDS = float(os.environ.get("CXR_DB_RESTART_WAIT_SECONDS", "1200"))


def _require_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL (the database is {connection.vendor}): "
                    "set DATABASE_URL=postgres://… to run the load and database-restart tests")


# ------------------------------------------------------------------------------------------ an HTTP reader


class Reader:
    """One reader's browser, reduced to a cookie jar: logs in through the login form, then calls the API."""

    def __init__(self, base_url: str, username: str):
        self.base_url, self.username = base_url, username
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.tab_id = f"load-{username}"

    def _cookie(self, name: str) -> str:
        return next((c.value for c in self.jar if c.name == name), "")

    def request(self, method: str, path: str, body: dict | None = None, *, form: bool = False):
        headers = {"Accept": "application/json", "X-CSRFToken": self._cookie(settings.CSRF_COOKIE_NAME)}
        data = None
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as res:
                status, raw, ctype = res.status, res.read(), res.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        payload = json.loads(raw) if "json" in ctype and raw else raw.decode(errors="replace")[:300]
        return status, payload

    def login(self, password: str) -> None:
        status, _ = self.request("GET", "/accounts/login/")
        assert status == 200, f"login page: HTTP {status}"
        status, _ = self.request("POST", "/accounts/login/", {
            "username": self.username, "password": password,
            "csrfmiddlewaretoken": self._cookie(settings.CSRF_COOKIE_NAME)}, form=True)
        assert status == 200 and self._cookie(settings.SESSION_COOKIE_NAME), f"{self.username} could not log in"


def _read_and_submit(reader: Reader, code: str, seconds: float, errors: list, sent: dict, submitted: set,
                     barrier: threading.Barrier) -> None:
    def expect(what, status, payload, allowed):
        if status not in allowed:
            errors.append((reader.username, what, status, payload))
            return False
        return True

    try:
        reader.login(PASSWORD)
        status, worklist = reader.request("GET", f"/api/trials/{code}/worklist/")
        expect("worklist", status, worklist, {200})
        reads = [r["id"] for r in worklist["results"] if r["available"]] if status == 200 else []
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        errors.append((reader.username, "set-up", 0, repr(exc)))
        reads = []
    barrier.wait(timeout=120)  # everybody starts together, logged in
    start = time.monotonic()
    if not reads:
        return
    rng = random.Random(reader.username)
    slice_seconds = seconds / len(reads)
    try:
        for i, read_id in enumerate(reads):
            if time.monotonic() >= start + seconds:
                break
            _read_one(reader, read_id, start + (i + 1) * slice_seconds, rng, expect, sent, submitted)
    except Exception as exc:  # noqa: BLE001 - a dropped connection or a timeout is a failure too
        errors.append((reader.username, "request", 0, repr(exc)))


def _read_one(reader: Reader, read_id: int, read_ends: float, rng: random.Random, expect, sent: dict,
              submitted: set) -> None:
    """Open a read, autosave at a reader's pace until its time slice ends, submit, then submit again."""
    base = f"/api/reads/{read_id}/"
    status, payload = reader.request("POST", base + "events/", {"kind": "opened", "tab_id": reader.tab_id})
    expect("opened", status, payload, {201})
    version = None
    n = 0
    while time.monotonic() < read_ends and n < MAX_SAVES_PER_READ:
        text = {"findings": f"Lungs clear, pass {n}.", "impression": f"{reader.username} read {read_id}: "
                f"draft {n}.", "finding_flags": {}, "base_version": version, "tab_id": reader.tab_id}
        status, payload = reader.request("PUT", base + "autosave/", text)
        if expect("autosave", status, payload, {200}):
            version = payload["version"]
            sent[read_id] = text
        n += 1
        time.sleep(rng.uniform(0.1, 0.5))
    final = {"findings": "Lungs clear.", "impression": f"{reader.username} read {read_id}: final.",
             "finding_flags": {}, "base_version": version, "tab_id": reader.tab_id}
    status, payload = reader.request("POST", base + "submit/", final)
    if expect("submit", status, payload, {201}):
        sent[read_id] = final
        submitted.add(read_id)
        # the answer was "lost" and the client sends again: refused, no second report
        status, payload = reader.request("POST", base + "submit/", final)
        if expect("submit again", status, payload, {409}) and not (
                isinstance(payload, dict) and payload.get("code") == "already_submitted"):
            expect("submit again (code)", 0, payload, set())


@pytest.mark.django_db(transaction=True)
def test_twenty_readers_autosave_and_submit_at_once_without_error_or_lost_report(build_trial, live_server):
    _require_postgresql()
    trial, readers, _, _ = build_trial(readers_per_site=N_READERS, n_cases=N_READERS * READS_PER_READER // 2,
                                       code="load")
    assert Read.objects.filter(trial=trial).count() == N_READERS * READS_PER_READER
    errors: list = []
    sent: dict[int, dict] = {}
    submitted: set[int] = set()
    barrier = threading.Barrier(N_READERS + 1)
    clients = [Reader(live_server.url, user.username) for user in readers]
    threads = [threading.Thread(target=_read_and_submit, daemon=True,
                                args=(client, trial.code, LOAD_SECONDS, errors, sent, submitted, barrier))
               for client in clients]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a reader thread did not finish in time"

    assert not errors, f"{len(errors)} failed requests, first ones: {errors[:5]}"
    assert len(submitted) >= N_READERS, "fewer submissions than readers: the load did not run"
    chain = audit.verify()
    assert chain.intact, str(chain)
    # every submission was audited once
    assert AuditEvent.objects.filter(trial=trial, action="report.submitted").count() == len(submitted)
    per_read = dict(Report.objects.filter(read__trial=trial).values_list("read").annotate(n=Count("id")))
    assert set(per_read) == submitted  # a report for every submission, none for the others
    assert set(per_read.values()) == {1}  # no read has two reports
    for read_id in submitted:
        report = Report.objects.get(read_id=read_id)
        assert report.version == 1
        assert (report.findings, report.impression) == (sent[read_id]["findings"], sent[read_id]["impression"])
    assert Read.objects.filter(pk__in=submitted).exclude(status=ReadStatus.SUBMITTED).count() == 0
    # reads left open keep the last autosaved text
    for read_id in set(sent) - submitted:
        assert ReportDraft.objects.get(read_id=read_id).impression == sent[read_id]["impression"]



# ------------------------------------------------------------------------------------------ database restart


def _pg_cluster() -> list[str]:
    """`<version> main` of the local cluster the tests use, or skip saying why it cannot be restarted here."""
    host = settings.DATABASES["default"].get("HOST") or "localhost"
    if host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        pytest.skip(f"the database at {host} is not on this machine: it cannot be restarted by the test")
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        pytest.skip("pg_ctlcluster (Debian's postgresql-common) is missing: cannot restart PostgreSQL here")
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir() if (p / "main").is_dir())
    if not versions:
        pytest.skip("no PostgreSQL cluster named main under /etc/postgresql")
    return [versions[-1], "main"]


def _wait_for_other_runs() -> None:
    """Restarting PostgreSQL would break another test run that uses it: wait until none does."""
    deadline = time.monotonic() + OTHER_RUN_WAIT_SECONDS
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'test\\_%%' "
                           "AND datname <> current_database()")
            others = cursor.fetchone()[0]
        if not others:
            return
        if time.monotonic() > deadline:
            pytest.skip(f"{others} connections of another test run still use this PostgreSQL: not restarted")
        time.sleep(30)


def _pg_ctl(cluster: list[str], action: str) -> None:
    # fast: ends the open sessions (a smart stop would wait for them forever)
    mode = ["-m", "fast"] if action == "stop" else []
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *mode],
                   check=True, timeout=120, capture_output=True)


def _wait_until_ready(seconds: float = 60) -> None:
    port = str(settings.DATABASES["default"].get("PORT") or 5432)
    host = settings.DATABASES["default"].get("HOST") or "127.0.0.1"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["pg_isready", "-h", host, "-p", port], capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"PostgreSQL did not come back within {seconds} s")


def _draft_text(read) -> str | None:
    connection.close()  # the previous connection died with the server
    saved = ReportDraft.objects.filter(read=read).first()
    return saved.impression if saved else None


class BrowserThread:
    """A Chromium driven from a thread of its own: Playwright's sync API allows one instance per thread, and
    the e2e tests' session-wide instance may be alive in the test's thread. Call it with a function of the page."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jobs: queue.Queue = queue.Queue()
        self.started: concurrent.futures.Future = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.started.result(timeout=120)  # raises what stopped the browser from starting

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                context = browser.new_context(base_url=self.base_url, viewport={"width": 1400, "height": 900})
                page = context.new_page()
                page.set_default_timeout(20_000)
                self.started.set_result(True)
                while (job := self.jobs.get()) is not None:
                    fn, done = job
                    try:
                        done.set_result(fn(page))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        done.set_exception(exc)
                context.close()
                browser.close()
        except BaseException as exc:  # noqa: BLE001
            if not self.started.done():
                self.started.set_exception(exc)

    def __call__(self, fn, timeout: float = 120):
        done: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((fn, done))
        return done.result(timeout=timeout)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=60)


@pytest.fixture
def browser_page(live_server, monkeypatch):
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (scripts/system-deps.sh).")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("Python Playwright is not installed: `pip install -e '.[dev]'`.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # an e2e test's Playwright loop may run in this thread
    browser = BrowserThread(live_server.url)
    yield browser
    browser.close()


READ_SHOWN = "() => document.getElementById('read-app').dataset.imageShownMs !== undefined"
SAVED = "() => /Saved/.test(document.getElementById('save-status').textContent)"
OFFLINE = "() => /Offline/.test(document.getElementById('save-status').textContent)"
KEPT_LOCALLY = ("() => Object.keys(localStorage).filter(k => k.startsWith('cxr-trial:read:'))"
                ".map(k => localStorage.getItem(k)).join('\\n')")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_database_restarted_while_a_reader_types_loses_no_text_and_tells_the_reader(build_trial, browser_page):
    _require_postgresql()
    cluster = _pg_cluster()
    trial, *_ = build_trial(readers_per_site=2, n_cases=1, code="dbr")
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    username = read.reader.user.username
    ARTIFACTS.mkdir(exist_ok=True)

    def open_and_type(page):
        login(page, username, PASSWORD)
        page.goto(f"/t/{trial.code}/read/{read.pk}/")
        page.wait_for_function(READ_SHOWN)
        page.locator("#impression").fill("Before the outage.")
        page.wait_for_function(SAVED)

    def type_more(page):
        impression = page.locator("#impression")
        impression.focus()
        page.keyboard.press("Control+End")
        impression.press_sequentially(" Typed while the database was down.", delay=20)
        return impression.input_value()

    def told_offline(page):
        page.wait_for_function(OFFLINE, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "reader-offline.png"))
        return page.inner_text("#save-status"), page.evaluate(KEPT_LOCALLY)

    def reload_text(page):
        page.reload()
        page.wait_for_function(READ_SHOWN)
        return page.locator("#impression").input_value()

    browser_page(open_and_type)
    assert _draft_text(read) == "Before the outage."
    typed = "Before the outage. Typed while the database was down."

    _wait_for_other_runs()
    connection.close()
    stopped = False
    try:
        _pg_ctl(cluster, "stop")
        stopped = True
        assert browser_page(type_more) == typed
        # the reader is told (static/js/reading: the offline text), and the text is kept in the browser meanwhile
        status, kept = browser_page(told_offline)
        assert "kept in this browser" in status
        assert "Typed while the database was down." in kept
        _pg_ctl(cluster, "start")
        stopped = False
        _wait_until_ready()
        # back: the text is sent without the reader doing anything
        browser_page(lambda page: page.wait_for_function(SAVED, timeout=60_000))
        deadline = time.monotonic() + 30
        while _draft_text(read) != typed and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _draft_text(read) == typed
    except Exception:
        try:  # the failing page, best effort: the original error is what counts
            browser_page(lambda page: page.screenshot(path=str(ARTIFACTS / "reader-database-restart-failed.png"),
                                                      full_page=True), timeout=30)
        except Exception:  # noqa: BLE001
            pass
        raise
    finally:
        if stopped:
            _pg_ctl(cluster, "start")
        _wait_until_ready()
        connection.close()
    assert browser_page(reload_text) == typed  # nothing typed is lost
