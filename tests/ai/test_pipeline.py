"""The draft pipeline on the Django side: one draft per case and model, retries, failures with reasons."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ai import backends, selectors, services
from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
from core import clock
from core.errors import ServiceError, WrongStatus
from tests import dicom_corpus as corpus
from trial import events as trial_events
from trial import services as trial_services
from trial.access import access_to
from trial.models import AuditEvent


class FakeBackend:
    """Stands in for a model: scripted failures, then a fixed draft. Counts calls."""

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.calls = 0

    def generate(self, requests, *, findings):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        assert requests[0].image_png.startswith(b"\x89PNG")
        return [backends.Draft(text="FINDINGS: Clear.\nIMPRESSION: Normal.", findings="Clear.", impression="Normal.",
                               finding_scores={f: 0.1 for f in findings}, generated_tokens=7, seconds=0.01)]


@pytest.fixture
def fake(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setattr(services, "backend_for", lambda model_version: backend)
    return backend


@pytest.fixture
def model(db):
    return ModelVersion.objects.create(name="fake", backend="http", url="http://127.0.0.1:9/v1")


@pytest.fixture
def ai_trial(trial, site, investigator, model):
    services.assign_model(trial=trial, by=investigator, model_version=model)
    return trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")


def _enrol(trial, site, by, seed, capture):
    with capture(execute=True):
        return trial_services.enrol_case(trial=trial, site=site, by=by,
                                         data=corpus.radiograph_bytes(seed=seed, rows=120, columns=100))


def test_enrolment_produces_one_ready_draft(ai_trial, site, investigator, fake, django_capture_on_commit_callbacks):
    case = _enrol(ai_trial, site, investigator, 1, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert draft.status == DraftStatus.READY and draft.impression == "Normal."
    assert draft.finding_scores == {f: 0.1 for f in ai_trial.findings}
    assert AuditEvent.objects.filter(action="draft.ready").count() == 1


def test_the_same_enrolment_event_twice_gives_one_draft(ai_trial, site, investigator, fake,
                                                       django_capture_on_commit_callbacks):
    case = _enrol(ai_trial, site, investigator, 2, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        trial_events.announce(trial_events.case_enrolled, case_id=case.pk)
        trial_events.announce(trial_events.case_enrolled, case_id=case.pk)
    assert AIDraft.objects.filter(case=case).count() == 1 and fake.calls == 1


def test_running_the_generation_again_leaves_a_ready_draft_alone(ai_trial, site, investigator, fake,
                                                                 django_capture_on_commit_callbacks):
    case = _enrol(ai_trial, site, investigator, 3, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert services.generate_draft(draft_id=draft.pk, task_id="another") is None
    assert fake.calls == 1


def test_transient_errors_are_retried_then_succeed(ai_trial, site, investigator, fake, _eager_celery,
                                                   django_capture_on_commit_callbacks):
    _eager_celery.conf.task_eager_propagates = False  # let Celery's eager apply() perform the retries
    fake.failures = [backends.TransientModelError("server busy"), backends.TransientModelError("timeout")]
    case = _enrol(ai_trial, site, investigator, 4, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert draft.status == DraftStatus.READY and fake.calls == 3 and draft.attempts == 3


def test_persistent_transient_errors_end_in_failed_with_the_reason(ai_trial, site, investigator, fake, _eager_celery,
                                                                    django_capture_on_commit_callbacks):
    _eager_celery.conf.task_eager_propagates = False
    fake.failures = [backends.TransientModelError("server unreachable")] * 10
    case = _enrol(ai_trial, site, investigator, 5, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert draft.status == DraftStatus.FAILED and "server unreachable" in draft.error
    assert draft.error.startswith("Gave up after 6 attempts")


def test_permanent_error_fails_at_once_and_investigator_can_retry(ai_trial, site, investigator, fake,
                                                                  django_capture_on_commit_callbacks):
    fake.failures = [backends.PermanentModelError("The processor cannot take this image.")]
    case = _enrol(ai_trial, site, investigator, 6, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert draft.status == DraftStatus.FAILED and draft.error == "The processor cannot take this image."
    with django_capture_on_commit_callbacks(execute=True):
        services.retry_draft(draft=draft, by=investigator)
    draft.refresh_from_db()
    assert draft.status == DraftStatus.READY and draft.attempts == 2


def test_backfill_drafts_every_case_missing_one(trial, site, investigator, model, fake,
                                                django_capture_on_commit_callbacks):
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")
    cases = [_enrol(trial, site, investigator, 10 + i, django_capture_on_commit_callbacks) for i in range(3)]
    assert not AIDraft.objects.exists()  # no model yet: nothing drafted
    TrialModel.objects.create(trial=trial, model_version=model, assigned_by=investigator)
    with django_capture_on_commit_callbacks(execute=True):
        requested = services.backfill(trial=trial, by=investigator)
    assert len(requested) == 3
    assert selectors.draft_progress(access=access_to(user=investigator, trial=trial))["ready"] == 3
    assert {d.case_id for d in AIDraft.objects.all()} == {c.pk for c in cases}


def test_model_cannot_change_once_cases_are_enrolled(ai_trial, site, investigator, fake,
                                                     django_capture_on_commit_callbacks):
    _enrol(ai_trial, site, investigator, 20, django_capture_on_commit_callbacks)
    other = ModelVersion.objects.create(name="other", backend="http", url="http://127.0.0.1:9/v1")
    with pytest.raises(WrongStatus, match="cannot change once cases are enrolled"):
        services.assign_model(trial=ai_trial, by=investigator, model_version=other)


def test_register_model_refuses_a_missing_checkpoint(tmp_path, db):
    with pytest.raises(ServiceError, match="checkpoint was refused"):
        services.register_model(by=None, name="missing", backend="janus", path=str(tmp_path / "nope"))
    assert not ModelVersion.objects.filter(name="missing").exists()


def test_register_model_command_reports_a_corrupt_checkpoint(tmp_path, db):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CommandError, match="checkpoint was refused"):
        call_command("register_model", "corrupt", "--path", str(folder))


def test_bad_generation_settings_are_refused(db):
    with pytest.raises(ServiceError, match="Generation settings are not valid"):
        services.register_model(by=None, name="bad", backend="http", url="http://x/v1",
                                generation={"max_new_tokens": 0}, check=False)


def test_drafts_page_and_api_are_for_investigators(client, ai_trial, site, investigator, outsider, fake,
                                                   django_capture_on_commit_callbacks):
    _enrol(ai_trial, site, investigator, 30, django_capture_on_commit_callbacks)
    client.force_login(investigator)
    page = client.get(f"/t/{ai_trial.code}/ai/").content.decode()
    assert "fake" in page and "Ready" in page
    assert client.get(f"/api/trials/{ai_trial.code}/drafts/progress/").json() == {
        "pending": 0, "running": 0, "ready": 1, "failed": 0, "missing": 0, "total": 1}
    drafts = client.get(f"/api/trials/{ai_trial.code}/drafts/").json()  # a page at a time
    assert drafts["count"] == 1 and drafts["next"] is None and drafts["results"][0]["status"] == "ready"
    assert "text" not in drafts["results"][0] and "findings" not in drafts["results"][0]
    client.force_login(outsider)
    assert client.get(f"/t/{ai_trial.code}/ai/").status_code == 403
    assert client.get(f"/api/trials/{ai_trial.code}/drafts/").status_code == 403


def test_a_draft_whose_task_was_lost_is_sent_again(ai_trial, site, investigator, fake, monkeypatch,
                                                   django_capture_on_commit_callbacks):
    """The broker down at enrolment: the case is enrolled, its draft row stays pending (the failed send is
    logged, not raised); the periodic requeue sends it again, and one draft is made."""
    from datetime import timedelta

    from ai import tasks

    def down(*args, **kwargs):
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(tasks.generate_draft, "apply_async", down)
    case = _enrol(ai_trial, site, investigator, 9, django_capture_on_commit_callbacks)
    draft = AIDraft.objects.get(case=case)
    assert draft.status == DraftStatus.PENDING and fake.calls == 0
    monkeypatch.undo()
    monkeypatch.setattr(services, "backend_for", lambda model_version: fake)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_pending() == 0  # not yet: it may still be on its way
    AIDraft.objects.filter(pk=draft.pk).update(created_at=draft.created_at - timedelta(minutes=11))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_pending() == 1
    draft.refresh_from_db()
    assert draft.status == DraftStatus.READY and fake.calls == 1
    with django_capture_on_commit_callbacks(execute=True):  # asking again for a ready draft sends nothing
        services.request_draft(case=case)
    assert fake.calls == 1


def test_a_live_trials_drafts_go_before_a_reader_studys(ai_trial, site, investigator, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    """The draft task is sent with its priority (served lowest number first on Redis): an urgent case of a live
    trial first, then a live trial's cases, a reader study's batch last."""
    from ai import tasks
    from core.celery import PRIORITY_BATCH, PRIORITY_LIVE, PRIORITY_URGENT

    assert PRIORITY_URGENT < PRIORITY_LIVE < PRIORITY_BATCH
    assert services.draft_priority(prospective=True, urgent=True) == PRIORITY_URGENT
    assert services.draft_priority(prospective=True, urgent=False) == PRIORITY_LIVE
    assert services.draft_priority(prospective=False, urgent=True) == PRIORITY_BATCH  # no urgency in a batch
    sent = []
    monkeypatch.setattr(tasks.generate_draft, "apply_async",
                        lambda args, priority, countdown: sent.append((args, priority, countdown)))
    case = _enrol(ai_trial, site, investigator, 12, django_capture_on_commit_callbacks)  # a reader study
    assert sent == [([AIDraft.objects.get(case=case).pk], PRIORITY_BATCH, 0)]  # a model of one image: at once


def test_a_draft_left_running_by_a_dead_task_is_sent_again(ai_trial, site, investigator, fake, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    """A task that died after claiming its draft (its worker killed, a database error after the claim) leaves the
    draft running: once its claim is stale the periodic requeue sends it again, and one draft is made."""
    from datetime import timedelta

    from ai import tasks

    monkeypatch.setattr(tasks.generate_draft, "apply_async", lambda *args, **kwargs: None)  # the first send is lost
    case = _enrol(ai_trial, site, investigator, 13, django_capture_on_commit_callbacks)
    monkeypatch.undo()
    monkeypatch.setattr(services, "backend_for", lambda model_version: fake)
    draft = AIDraft.objects.get(case=case)
    AIDraft.objects.filter(pk=draft.pk).update(status=DraftStatus.RUNNING, claimed_by="a-dead-task",
                                               started_at=clock.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_pending() == 0  # its task may still be working
    AIDraft.objects.filter(pk=draft.pk).update(started_at=clock.now() - services.STALE_CLAIM - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.requeue_pending() == 1
    draft.refresh_from_db()
    assert draft.status == DraftStatus.READY and fake.calls == 1


class RecordingBackend(FakeBackend):
    """A fake model that keeps the requests it was given."""

    def __init__(self):
        super().__init__()
        self.requests = []

    def generate(self, requests, *, findings):
        self.requests += requests
        return super().generate(requests, findings=findings)


@pytest.mark.parametrize("images", [1, 2])
def test_a_model_of_two_images_drafts_from_the_frontal_and_the_lateral_once_the_study_settled(
        trial, site, investigator, monkeypatch, django_capture_on_commit_callbacks, images):
    """The paper's model takes the frontal film alone and drafts at once; a model that takes two images gets the
    frontal film and then the lateral, and its draft waits for the study to settle (the trial's settle window);
    the draft records how many images the model was given."""
    import io

    import pydicom

    from ai import tasks
    from tests.live import image

    version = ModelVersion.objects.create(name=f"two-{images}", backend="http", url="http://127.0.0.1:9/v1",
                                          generation={"images": images})
    services.assign_model(trial=trial, by=investigator, model_version=version)
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, settle_seconds=90)
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")
    sent = []
    monkeypatch.setattr(tasks.generate_draft, "apply_async", lambda args, priority, countdown: sent.append(countdown))
    frontal = image(1)
    ds = pydicom.dcmread(io.BytesIO(frontal), stop_before_pixels=True)
    lateral = image(2, ViewPosition="LL", StudyInstanceUID=ds.StudyInstanceUID, SeriesInstanceUID=ds.SeriesInstanceUID)
    with django_capture_on_commit_callbacks(execute=True):
        case = trial_services.enrol_case(trial=trial, site=site, by=investigator, data=frontal)
    assert sent == [90 if images == 2 else 0]
    with django_capture_on_commit_callbacks(execute=True):  # the lateral joins the case within the window
        assert trial_services.enrol_case(trial=trial, site=site, by=investigator, data=lateral) == case
    backend = RecordingBackend()
    monkeypatch.setattr(services, "backend_for", lambda model_version: backend)
    draft = services.generate_draft(draft_id=AIDraft.objects.get(case=case).pk)
    [request] = backend.requests
    assert request.image_png == case.display_image.open("rb").read()
    if images == 2:
        assert request.more_images_png == (case.images.get().display_image.open("rb").read(),)
    else:
        assert request.more_images_png == ()
    assert draft.images == images
    assert AuditEvent.objects.get(action="draft.ready").payload["images"] == images


def test_a_janus_model_of_two_images_is_refused(tmp_path, db):
    with pytest.raises(ServiceError, match="one image"):
        services.register_model(by=None, name="janus-two", backend="janus", path=str(tmp_path),
                                generation={"images": 2})
    assert not ModelVersion.objects.exists()
    with pytest.raises(ValueError, match="one image"):
        from ai.backends.janus import JanusBackend

        JanusBackend(str(tmp_path), backends.GenerationSettings(images=2))


class ImagesBackend(RecordingBackend):
    """A fake model whose draft says how many images it was given; `during` runs while it 'thinks'."""

    def __init__(self, during=None, refuse=False):
        super().__init__()
        self.during, self.refuse = during, refuse

    def generate(self, requests, *, findings):
        self.requests += requests
        if self.during:
            self.during()
        if self.refuse:
            raise backends.PermanentModelError("the model refused the lateral")
        n = len(requests[0].images_png)
        return [backends.Draft(text=f"FINDINGS: From {n}.\nIMPRESSION: Normal.", findings=f"From {n}.",
                               impression="Normal.", finding_scores={f: 0.1 * n for f in findings},
                               generated_tokens=7, seconds=0.01)]


@pytest.fixture
def late_lateral(trial, site, investigator, monkeypatch, django_capture_on_commit_callbacks):
    """A model of `images` images whose draft was made from the frontal film alone, before the study's lateral came
    (after the settle window); the lateral then joins the case. Returns (make, sent): make(images) -> (case, draft),
    and the countdowns of the redraft tasks sent."""
    import io

    import pydicom

    from ai import tasks
    from tests.live import image

    sent = []
    monkeypatch.setattr(tasks.generate_draft, "apply_async", lambda args, priority, countdown: None)
    monkeypatch.setattr(tasks.redraft, "apply_async", lambda args, priority, countdown: sent.append((args, countdown)))

    def make(images: int):
        version = ModelVersion.objects.create(name=f"late-{images}", backend="http", url="http://127.0.0.1:9/v1",
                                              generation={"images": images})
        services.assign_model(trial=trial, by=investigator, model_version=version)
        t = trial_services.update_trial_settings(trial=trial, by=investigator, settle_seconds=90)
        t = trial_services.transition_trial(trial=t, by=investigator, to="enrolling")
        frontal = image(1)
        ds = pydicom.dcmread(io.BytesIO(frontal), stop_before_pixels=True)
        with django_capture_on_commit_callbacks(execute=True):
            case = trial_services.enrol_case(trial=t, site=site, by=investigator, data=frontal)
        monkeypatch.setattr(services, "backend_for", lambda model_version: ImagesBackend())
        draft = services.generate_draft(draft_id=AIDraft.objects.get(case=case).pk)
        assert draft.images == 1 and draft.findings == "From 1."
        lateral = image(2, ViewPosition="LL", StudyInstanceUID=ds.StudyInstanceUID,
                        SeriesInstanceUID=ds.SeriesInstanceUID)
        with django_capture_on_commit_callbacks(execute=True):
            assert trial_services.enrol_case(trial=t, site=site, by=investigator, data=lateral) == case
        return case, draft

    return make, sent


def test_a_lateral_after_the_draft_is_drafted_again_from_both_images_before_any_reader_sees_it(late_lateral,
                                                                                                monkeypatch):
    make, sent = late_lateral
    case, draft = make(2)
    assert sent == [([draft.pk], 90)]          # once the study has settled again
    backend = ImagesBackend()
    monkeypatch.setattr(services, "backend_for", lambda model_version: backend)
    again = services.redraft(draft_id=draft.pk)
    assert again.pk == draft.pk and again.images == 2 and again.findings == "From 2."
    [request] = backend.requests
    assert request.more_images_png == (case.images.get().display_image.open("rb").read(),)
    event = AuditEvent.objects.get(action="draft.redrafted")
    assert event.payload["images_before"] == 1 and event.payload["images"] == 2
    assert services.redraft(draft_id=draft.pk) is None and len(backend.requests) == 1    # done once


def test_a_one_image_model_is_not_asked_again_for_a_lateral(late_lateral):
    make, sent = late_lateral
    make(1)
    assert sent == []


def test_a_draft_sent_to_a_reader_is_never_made_again(late_lateral, monkeypatch):
    make, _ = late_lateral
    case, draft = make(2)
    AIDraft.objects.filter(pk=draft.pk).update(delivered_at=clock.now())
    backend = ImagesBackend()
    monkeypatch.setattr(services, "backend_for", lambda model_version: backend)
    assert services.redraft(draft_id=draft.pk) is None and backend.requests == []
    draft.refresh_from_db()
    assert draft.findings == "From 1." and draft.images == 1


def test_a_reader_sent_the_case_while_the_model_works_keeps_the_draft_they_were_shown(late_lateral, monkeypatch):
    make, _ = late_lateral
    case, draft = make(2)
    backend = ImagesBackend(during=lambda: AIDraft.objects.filter(pk=draft.pk).update(delivered_at=clock.now()))
    monkeypatch.setattr(services, "backend_for", lambda model_version: backend)
    assert services.redraft(draft_id=draft.pk) is None and len(backend.requests) == 1
    draft.refresh_from_db()
    assert draft.findings == "From 1." and draft.images == 1
    assert AuditEvent.objects.get(action="draft.redraft_discarded").payload["reason"] == "sent to a reader first"


def test_a_model_that_refuses_the_lateral_leaves_the_ready_draft(late_lateral, monkeypatch):
    make, _ = late_lateral
    case, draft = make(2)
    monkeypatch.setattr(services, "backend_for", lambda model_version: ImagesBackend(refuse=True))
    assert services.redraft(draft_id=draft.pk) is None
    draft.refresh_from_db()
    assert draft.status == DraftStatus.READY and draft.findings == "From 1." and draft.images == 1
    assert "refused the lateral" in AuditEvent.objects.get(action="draft.redraft_failed").payload["reason"]
