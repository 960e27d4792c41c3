"""Every write of the ai app: registering models, assigning one to a trial, requesting and making drafts."""
from __future__ import annotations

import io
import logging
import os
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from PIL import Image

from core import clock
from core.celery import PRIORITY_BATCH, PRIORITY_LIVE, PRIORITY_URGENT
from core.errors import Conflict, ServiceError, WrongStatus
from trial import audit, lifecycle
from trial.models import Case, Role, Status, Trial
from trial.selectors import require_role

from . import backends
from .models import AIDraft, Backend, DraftStatus, ModelVersion, TrialModel
from .tasks import generate_draft as generate_draft_task
from .tasks import redraft as redraft_task

logger = logging.getLogger(__name__)

# A running claim older than this is a worker that died without Celery redelivering its task.
STALE_CLAIM = timedelta(minutes=30)


def backend_for(model_version: ModelVersion) -> backends.Backend:
    """The process-wide backend of a model version (loaded once per worker process)."""
    options = {}
    if model_version.server_model:
        options["model"] = model_version.server_model
    if model_version.api_key_env:
        options["api_key"] = os.environ.get(model_version.api_key_env, "")
    return backends.get_backend(
        model_version.backend, path=model_version.path or None, url=model_version.url or None,
        settings=backends.GenerationSettings.from_dict(model_version.generation), **options,
    )


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (256, 256), 0).save(buffer, format="PNG")
    return buffer.getvalue()


@transaction.atomic
def register_model(*, by, name: str, backend: str, path: str = "", url: str = "", server_model: str = "",
                   api_key_env: str = "", generation: dict | None = None, description: str = "",
                   is_demo: bool = False, check: bool = True) -> ModelVersion:
    """Check the checkpoint (or server) and load it once, so a bad one is refused here, not at the first case."""
    if backend not in Backend.values:
        raise ServiceError(f"Unknown backend “{backend}”; use one of {', '.join(Backend.values)}.", field="backend")
    if ModelVersion.objects.filter(name=name).exists():
        raise Conflict(f"A model version named “{name}” is already registered.", field="name")
    try:
        settings = backends.GenerationSettings.from_dict(generation or {})
    except ValueError as exc:
        raise ServiceError(f"Generation settings are not valid: {exc}", field="generation") from exc
    sha256, n_parameters = "", None
    if backend == Backend.JANUS:
        if settings.images != 1:
            raise ServiceError(backends.ONE_IMAGE_ONLY, field="generation")
        if not path:
            raise ServiceError("A janus model needs the path of its checkpoint folder.", field="path")
        path = os.path.abspath(path)
        try:
            info = backends.inspect_checkpoint(path)
        except backends.ModelError as exc:
            raise ServiceError(f"The checkpoint was refused: {exc}", field="path") from exc
        sha256, n_parameters = info.sha256, info.n_parameters
    elif not url:
        raise ServiceError("An http model needs the server URL.", field="url")
    version = ModelVersion(name=name, description=description, backend=backend, path=path, url=url,
                           server_model=server_model, api_key_env=api_key_env, weights_sha256=sha256,
                           n_parameters=n_parameters, generation=settings.to_dict(), is_demo=is_demo,
                           registered_by=by)
    if check:
        try:
            # asked as a case will ask it: as many images as the model takes
            blank = _blank_png()
            request = backends.DraftRequest(image_png=blank, more_images_png=(blank,) * (settings.images - 1))
            backend_for(version).generate([request], findings=["pneumothorax"])
        except backends.ModelError as exc:
            raise ServiceError(f"The model could not produce a draft: {exc}", field="path") from exc
    version.save()
    audit.record(actor=by, action="model.registered", obj=version, payload={
        "name": name, "backend": backend, "path": path, "url": url, "weights_sha256": sha256,
        "n_parameters": n_parameters, "generation": version.generation, "is_demo": is_demo,
    })
    return version


@transaction.atomic
def assign_model(*, trial: Trial, by, model_version: ModelVersion) -> TrialModel:
    """Choose the model of a trial. It is part of the intervention: fixed once the first case is enrolled."""
    require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    trial = Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)
    if trial.cases.exists() or not (trial.status == Status.SETUP or trial.allows(lifecycle.ENROL)):
        raise WrongStatus("The trial's model cannot change once cases are enrolled.")
    current = TrialModel.objects.filter(trial=trial).first()
    if current is not None:
        before = current.model_version.name
        current.model_version, current.assigned_by = model_version, by
        current.save(update_fields=["model_version", "assigned_by"])
    else:
        before = None
        current = TrialModel.objects.create(trial=trial, model_version=model_version, assigned_by=by)
    audit.record(actor=by, action="model.assigned", obj=trial, payload={"from": before, "to": model_version.name})
    return current


def request_draft(*, case: Case, model_version: ModelVersion | None = None) -> AIDraft | None:
    """Make sure the case has a draft row for the trial's model and that a task will fill it. Idempotent: a draft
    still pending and unclaimed (its task was never sent, or lost) is sent again; the claim makes one task win."""
    if model_version is None:
        assignment = TrialModel.objects.filter(trial_id=case.trial_id).select_related("model_version").first()
        if assignment is None:
            return None  # a trial without a model: the standard arm only, nothing to draft
        model_version = assignment.model_version
    try:
        with transaction.atomic():
            draft, created = AIDraft.objects.get_or_create(case=case, model_version=model_version)
            if created:
                audit.record(actor=None, action="draft.requested", obj=draft, trial=case.trial,
                             payload={"case": case.code, "model": model_version.name})
    except IntegrityError:  # two enrolment events at once: the other one created it (and sent its task)
        return AIDraft.objects.get(case=case, model_version=model_version)
    if created or (draft.status == DraftStatus.PENDING and not draft.claimed_by):
        _enqueue(draft)
    return draft


def draft_priority(*, prospective: bool, urgent: bool) -> int:
    """A live trial's reader waits for the draft of an arriving case; a reader study's batch does not."""
    if not prospective:
        return PRIORITY_BATCH
    return PRIORITY_URGENT if urgent else PRIORITY_LIVE


def _enqueue(draft: AIDraft, *, task=generate_draft_task) -> None:
    """The draft's task (generate_draft, or redraft), sent once the transaction commits, with its priority
    (draft_priority); a broker that is down is logged, not raised (the write stands; requeue_pending sends a lost
    generate_draft again later, a lost redraft leaves the ready draft)."""
    draft_id = draft.pk
    case = draft.case  # the caller's case (request_draft, request_redraft) or joined (requeue_pending): no query
    priority = draft_priority(prospective=case.trial.is_prospective, urgent=case.urgent)
    # A model that reads several images of the study drafts once the study has settled (its lateral has come): the
    # trial's settle window after the case arrived, or after a later image came. A model of one image drafts at once
    # from the frontal film.
    countdown = case.trial.settle_seconds if images_per_draft(draft.model_version) > 1 else 0
    transaction.on_commit(lambda: task.apply_async(args=[draft_id], priority=priority, countdown=countdown),
                          robust=True)


def images_per_draft(model_version: ModelVersion) -> int:
    """How many images of a case's study the model version takes (GenerationSettings.images)."""
    return backends.GenerationSettings.from_dict(model_version.generation).images


def _study_images_png(case: Case, *, limit: int) -> tuple[bytes, ...]:
    """The display PNGs of up to `limit` of the study's other images (a lateral), as they arrived; an image whose
    display PNG is not made yet is left out (the draft records how many images it was given)."""
    if limit <= 0:
        return ()
    out = []
    for image in case.images.exclude(display_image="")[:limit]:   # CaseImage's order: as received, as the viewer
        with image.display_image.open("rb") as f:
            out.append(f.read())
    return tuple(out)


# A pending draft older than this with no task working on it lost its message (the broker was down): sent again.
PENDING_TOO_LONG = timedelta(minutes=10)


def requeue_pending() -> int:
    """For celery beat: send again the tasks of drafts pending for longer than PENDING_TOO_LONG and claimed by
    nobody (a lost message), and of drafts left running by a task that died past its claim (STALE_CLAIM: a worker
    killed, or a database error after the claim). Generating is idempotent and the claim makes one task win, so a
    task sent twice makes one draft."""
    now = clock.now()
    stale = AIDraft.objects.filter(Q(status=DraftStatus.PENDING, claimed_by="", created_at__lt=now - PENDING_TOO_LONG)
                                   | Q(status=DraftStatus.RUNNING, started_at__lt=now - STALE_CLAIM)
                                   ).select_related("case__trial", "model_version")
    count = 0
    for draft in stale.iterator():
        _enqueue(draft)
        count += 1
    return count


def _claim(*, draft_id: int, task_id: str) -> AIDraft | None:
    """Mark the draft as running under this task, unless it is done or another live task holds it."""
    with transaction.atomic():
        draft = AIDraft.objects.select_for_update(of=("self",)).select_related("case", "model_version").get(pk=draft_id)
        if draft.status == DraftStatus.READY:
            return None
        held_by_other = (draft.status == DraftStatus.RUNNING and draft.claimed_by and draft.claimed_by != task_id
                         and draft.started_at and clock.now() - draft.started_at < STALE_CLAIM)
        if held_by_other:
            return None
        draft.status, draft.claimed_by, draft.started_at = DraftStatus.RUNNING, task_id, clock.now()
        draft.attempts += 1
        draft.error = ""
        draft.save(update_fields=["status", "claimed_by", "started_at", "attempts", "error"])
        return draft


def _request_for(draft: AIDraft) -> backends.DraftRequest:
    """What the model is given: the frontal film and, for a model of several images, the study's others."""
    case = draft.case
    with case.display_image.open("rb") as image:
        primary = image.read()
    more = _study_images_png(case, limit=images_per_draft(draft.model_version) - 1)
    return backends.DraftRequest(image_png=primary, clinical_history=case.clinical_history, more_images_png=more)


def generate_draft(*, draft_id: int, task_id: str = "inline") -> AIDraft | None:
    """Produce the draft outside any transaction (it takes seconds), then store it once.

    Safe to run twice: a ready draft is left alone, and only the task that holds the claim may store.
    TransientModelError propagates (the task retries); PermanentModelError marks the draft failed.
    """
    draft = _claim(draft_id=draft_id, task_id=task_id)
    if draft is None:
        return None
    request = _request_for(draft)
    try:
        result = backend_for(draft.model_version).generate([request], findings=list(draft.case.trial.findings))[0]
    except backends.PermanentModelError as exc:
        mark_failed(draft_id=draft_id, task_id=task_id, reason=str(exc))
        return None
    return _store(draft_id=draft_id, task_id=task_id, result=result, images=len(request.images_png))


# A study's later image (a lateral sent after the settle window) for a model that takes several images. The ready
# draft stays as it is, and is what a reader sees, until the new one is stored; the new one is stored only if no
# assisted reader has been sent the case by then (AIDraft.delivered_at, stamped by reading when it first sends the
# case): a reader's draft never changes under them, and a draft made again never leaves a read without one (the
# trial's draft time limit counts from arrival). A draft still pending reads the study when its task runs; one that
# is running when the image comes is looked at again when this task runs, the settle window later.


def _behind(draft: AIDraft) -> bool:
    """Ready, not yet sent to a reader, and made from fewer images than its model takes."""
    return (draft.status == DraftStatus.READY and draft.delivered_at is None
            and draft.images < images_per_draft(draft.model_version))


def request_redraft(*, case: Case) -> None:
    """An image joined the case: if the trial's model takes several images, look at its draft once the study has
    settled again (the trial's settle window); redraft then makes it again if it is behind the study."""
    assignment = TrialModel.objects.filter(trial_id=case.trial_id).select_related("model_version").first()
    if assignment is None or images_per_draft(assignment.model_version) <= 1:
        return
    draft = AIDraft.objects.filter(case=case, model_version=assignment.model_version).first()
    if draft is None or draft.delivered_at is not None:
        return
    draft.case, draft.model_version = case, assignment.model_version
    _enqueue(draft, task=redraft_task)


def redraft(*, draft_id: int) -> AIDraft | None:
    """Make a ready draft again from the study's images if it was made from fewer than its model takes and the case
    has not been sent to an assisted reader; stored only if that is still so once the model has answered. A model
    that refuses leaves the ready draft as it was (logged and audited). Returns the draft made again, or None."""
    draft = AIDraft.objects.select_related("case__trial", "model_version").get(pk=draft_id)
    if not _behind(draft):
        return None
    request = _request_for(draft)
    if len(request.images_png) <= draft.images:
        return None           # the study has no image the draft was not given (its lateral's PNG is not made yet)
    try:
        result = backend_for(draft.model_version).generate([request], findings=list(draft.case.trial.findings))[0]
    except backends.PermanentModelError as exc:
        logger.warning("draft %s not made again from %d images: %s", draft_id, len(request.images_png), exc)
        audit.record(actor=None, action="draft.redraft_failed", obj=draft, trial=draft.case.trial, payload={
            "case": draft.case.code, "model": draft.model_version.name, "images": len(request.images_png),
            "reason": str(exc)[:500]})
        return None
    return _store_redraft(draft_id=draft_id, result=result, images=len(request.images_png))


@transaction.atomic
def _store_redraft(*, draft_id: int, result, images: int) -> AIDraft | None:
    draft = AIDraft.objects.select_for_update(of=("self",)).select_related("case__trial", "model_version").get(
        pk=draft_id)
    if not _behind(draft) or images <= draft.images:
        # sent to a reader meanwhile (the reader keeps what they were shown), or made again by another task
        audit.record(actor=None, action="draft.redraft_discarded", obj=draft, trial=draft.case.trial, payload={
            "case": draft.case.code, "model": draft.model_version.name, "images": images,
            "reason": "sent to a reader first" if draft.delivered_at else "made again already"})
        return None
    before = draft.images
    _fill(draft, result, images=images)
    draft.save()
    audit.record(actor=None, action="draft.redrafted", obj=draft, trial=draft.case.trial, payload={
        "case": draft.case.code, "model": draft.model_version.name, "images_before": before, "images": images,
        "tokens": draft.generated_tokens, "seconds": round(draft.seconds or 0, 3)})
    return draft


def _fill(draft: AIDraft, result, *, images: int) -> None:
    """The model's answer on the draft row (saved by the caller, in its transaction)."""
    draft.images = images
    draft.text, draft.findings, draft.impression = result.text, result.findings, result.impression
    draft.finding_scores = {k: float(v) for k, v in result.finding_scores.items()}
    draft.score_source = getattr(result, "score_source", "") or ""
    draft.generated_tokens, draft.seconds, draft.finished_at = result.generated_tokens, result.seconds, clock.now()


@transaction.atomic
def _store(*, draft_id: int, task_id: str, result, images: int) -> AIDraft | None:
    draft = AIDraft.objects.select_for_update().get(pk=draft_id)
    if draft.status == DraftStatus.READY or draft.claimed_by != task_id:
        return None  # someone else finished or took over; exactly one result is kept
    _fill(draft, result, images=images)
    draft.status = DraftStatus.READY
    draft.save()
    audit.record(actor=None, action="draft.ready", obj=draft, trial=draft.case.trial, payload={
        "case": draft.case.code, "model": draft.model_version.name, "attempts": draft.attempts,
        "images": draft.images, "tokens": draft.generated_tokens, "seconds": round(draft.seconds or 0, 3),
    })
    return draft


@transaction.atomic
def mark_failed(*, draft_id: int, task_id: str, reason: str) -> None:
    draft = AIDraft.objects.select_for_update(of=("self",)).select_related("case").get(pk=draft_id)
    if draft.status == DraftStatus.READY:
        return
    draft.status, draft.error, draft.finished_at, draft.claimed_by = DraftStatus.FAILED, reason, clock.now(), ""
    draft.save(update_fields=["status", "error", "finished_at", "claimed_by"])
    audit.record(actor=None, action="draft.failed", obj=draft, trial=draft.case.trial,
                 payload={"case": draft.case.code, "reason": reason, "attempts": draft.attempts})


@transaction.atomic
def retry_draft(*, draft: AIDraft, by) -> AIDraft:
    """An investigator sends a failed draft back to the queue."""
    require_role(trial=draft.case.trial, user=by, roles=[Role.INVESTIGATOR])
    draft = AIDraft.objects.select_for_update().get(pk=draft.pk)
    if draft.status != DraftStatus.FAILED:
        raise Conflict("Only a failed draft can be retried.")
    draft.status, draft.error, draft.claimed_by = DraftStatus.PENDING, "", ""
    draft.save(update_fields=["status", "error", "claimed_by"])
    audit.record(actor=by, action="draft.retried", obj=draft, trial=draft.case.trial)
    _enqueue(draft)
    return draft


def backfill(*, trial: Trial, by) -> list[AIDraft]:
    """Request a draft for every case of the trial that has none (failed ones are retried)."""
    require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    assignment = TrialModel.objects.filter(trial=trial).select_related("model_version").first()
    if assignment is None:
        raise ServiceError("This trial has no AI model; assign one first.")
    touched = []
    for case in trial.cases.exclude(ai_drafts__model_version=assignment.model_version):
        draft = request_draft(case=case, model_version=assignment.model_version)
        if draft is not None:
            touched.append(draft)
    for draft in AIDraft.objects.filter(case__trial=trial, model_version=assignment.model_version,
                                        status=DraftStatus.FAILED):
        touched.append(retry_draft(draft=draft, by=by))
    audit.record(actor=by, action="draft.backfill", obj=trial, payload={"requested": len(touched)})
    return touched
