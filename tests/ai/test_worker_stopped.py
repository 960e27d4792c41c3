"""A live trial whose AI worker stopped for an hour: the arrivals' drafts wait on the broker; past the trial's draft
limit its rule lets the assisted reads open without a draft (an intercurrent event, logged); when the worker starts
again every queued draft is made exactly once, and the reads not yet opened get theirs.

Needs a broker that keeps messages while no worker runs (Redis, as in CI and production); skipped on the embedded
filesystem transport like the other worker tests."""
from __future__ import annotations

import os
import threading
from datetime import timedelta
from http.server import ThreadingHTTPServer

import pytest
from django.conf import settings
from django.db import connection

from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
from core import clock
from reading import selectors as reading_selectors
from reading import services as reading_services
from reading.models import Read
from tests.ai.test_worker_faults import SlowModelServer, _wait, _worker
from tests.live import arrive, committed, image, open_trial
from trial import services as trial_services
from trial.access import access_for
from trial.models import Case, Deviation


class FastModelServer(SlowModelServer):
    first_report_delay = 0.0


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_drafts_queued_while_the_worker_was_stopped_are_made_once_and_late_ones_follow_the_rule(
        investigator, make_user, _eager_celery, _media):
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("needs a broker that keeps the tasks while no worker runs (set CELERY_BROKER_URL to Redis)")
    _eager_celery.conf.task_always_eager = False  # the real broker; no worker yet
    from config.celery import app

    app.control.purge()  # nothing left on the queues by another test
    server = ThreadingHTTPServer(("127.0.0.1", 0), FastModelServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live = open_trial(investigator=investigator, make_user=make_user, code="stopped", draft_rule="read_without",
                      draft_limit_minutes=30, open_=False)
    model = ModelVersion.objects.create(name="fast", backend="http",
                                        url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    TrialModel.objects.create(trial=live.trial, model_version=model, assigned_by=investigator)
    with committed():
        trial_services.transition_trial(trial=live.trial, by=investigator, to="open")
    cases = [arrive(live.trial, live.sites[0], image(200 + i)) for i in range(3)]
    assert AIDraft.objects.filter(case__in=cases, status=DraftStatus.PENDING).count() == 3  # queued, not made

    def assisted(case) -> Read:
        return Read.objects.select_related("reader__user").get(case=case, arm="assisted")

    def available(read: Read) -> bool:
        rows = reading_selectors.worklist(access=access_for(user=read.reader.user, code=live.trial.code)).rows
        return next(r.available for r in rows if r.id == read.pk)

    # minutes after arrival: the assisted reads wait for their drafts (the rule's limit is 30 minutes)
    assert not any(available(assisted(c)) for c in cases)
    # an hour passes with no worker: past the limit, the rule lets them open without a draft
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(arrived_at=clock.now() - timedelta(hours=1))
    assert all(available(assisted(c)) for c in cases)
    first = assisted(cases[0])
    reading_services.record_event(read_id=first.pk, by=first.reader.user, kind="opened", tab_id="t")
    report = reading_services.submit_report(read_id=first.pk, by=first.reader.user, findings="", tab_id="t",
                                            impression="No acute disease.", finding_flags={})
    assert report.draft_kept_share is None  # no draft was shown
    assert list(Deviation.objects.values_list("kind", "case")) == [("draft_not_shown", cases[0].pk)]

    env = {**os.environ, "CXR_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
           "CXR_MEDIA_ROOT": str(_media), "PYTHONUNBUFFERED": "1"}
    log = _media.parent / "worker.log"
    worker = _worker(env, log)
    try:
        _wait(lambda: AIDraft.objects.filter(case__in=cases, status=DraftStatus.READY).count() == 3, 120,
              "the worker to make the queued drafts", log)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.shutdown()
    # each queued draft made once, by one attempt
    assert sorted(AIDraft.objects.filter(case__in=cases).values_list("attempts", flat=True)) == [1, 1, 1]
    # a read not opened yet now opens with its draft: no deviation for it
    second = assisted(cases[1])
    screen = reading_selectors.read_screen(read=reading_selectors.own_read(read_id=second.pk,
                                                                           user=second.reader.user))
    assert screen.draft is not None and screen.draft.impression == "No acute abnormality."
    reading_services.record_event(read_id=second.pk, by=second.reader.user, kind="opened", tab_id="t")
    reading_services.submit_report(read_id=second.pk, by=second.reader.user, findings="", tab_id="t",
                                   impression="No acute disease.", finding_flags={})
    assert Deviation.objects.count() == 1
