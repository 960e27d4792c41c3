"""The draft pipeline with real Celery workers on a real broker: a worker killed in the middle of a draft.

Needs a broker that redelivers unacknowledged messages (Redis or RabbitMQ, as in CI and production);
the embedded filesystem transport deletes a message when it is taken, so this test says so and skips there.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
from tests import dicom_corpus as corpus
from trial import services as trial_services

ROOT = Path(__file__).resolve().parents[2]


class SlowModelServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions server whose first report takes long (so we can kill the worker)."""

    report_requests = 0
    first_report_delay = 6.0

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = json.dumps(body["messages"])
        is_report = "FINDINGS" in question
        if is_report:
            type(self).report_requests += 1
            if type(self).report_requests == 1:
                time.sleep(self.first_report_delay)
        content = "FINDINGS: Clear lungs.\nIMPRESSION: No acute abnormality." if is_report else "no"
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                              "usage": {"completion_tokens": 9}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def _worker(env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.trial.worker_app", "worker", "-Q", "default,ai",
         "--concurrency", "1", "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait(predicate, timeout, what, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    output = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}. Worker log:\n{output}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_draft_leaves_exactly_one_draft(trial, site, investigator, _eager_celery, _media,
                                                          django_capture_on_commit_callbacks):
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("needs a broker that redelivers unacknowledged tasks (set CELERY_BROKER_URL to Redis)")
    _eager_celery.conf.task_always_eager = False  # the real broker, the real worker
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowModelServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = ModelVersion.objects.create(name="slow", backend="http",
                                        url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    TrialModel.objects.create(trial=trial, model_version=model, assigned_by=investigator)
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")
    env = {**os.environ, "CXR_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
           "CXR_MEDIA_ROOT": str(_media), "CELERY_VISIBILITY_TIMEOUT": "3", "PYTHONUNBUFFERED": "1"}
    first_log, second_log = _media.parent / "worker-1.log", _media.parent / "worker-2.log"
    first = _worker(env, first_log)
    second = None
    try:
        case = trial_services.enrol_case(trial=trial, site=site, by=investigator,
                                         data=corpus.radiograph_bytes(seed=77, rows=120, columns=100))
        _wait(lambda: AIDraft.objects.filter(case=case, status=DraftStatus.RUNNING).exists(), 60,
              "the first worker to start the draft", first_log)
        os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the task stays unacknowledged
        first.wait(timeout=10)
        second = _worker(env, second_log)
        _wait(lambda: AIDraft.objects.filter(case=case, status=DraftStatus.READY).exists(), 240,
              "the task to be redelivered and finished", second_log)
        drafts = AIDraft.objects.filter(case=case)
        assert drafts.count() == 1
        draft = drafts.get()
        assert draft.attempts == 2 and draft.impression == "No acute abnormality."
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
        server.shutdown()
