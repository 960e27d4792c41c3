"""Analysis plans (versioned, frozen with a hash) and analysis runs (a dataset snapshot, its hash, every result)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from trial.models import Trial


class AnalysisPlan(models.Model):
    """One version of a trial's statistical analysis plan. Frozen: who, when and the SHA-256 of its canonical JSON."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="analysis_plans")
    version = models.PositiveIntegerField()
    content = models.JSONField(help_text="The plan (stats.plan schema).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField()
    frozen_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    frozen_at = models.DateTimeField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the canonical JSON, set at freezing.")

    class Meta:
        ordering = ["trial", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "version"], name="analysis_plan_version_unique"),
            models.CheckConstraint(
                condition=(Q(frozen_at__isnull=True, frozen_by__isnull=True, sha256="")
                           | Q(frozen_at__isnull=False, frozen_by__isnull=False, sha256__regex=r"^[0-9a-f]{64}$")),
                name="analysis_plan_frozen_all_or_nothing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code} analysis plan v{self.version}{' (frozen)' if self.is_frozen else ''}"

    @property
    def is_frozen(self) -> bool:
        return self.frozen_at is not None

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = type(self).objects.filter(pk=self.pk).values_list("frozen_at", flat=True).first()
            if stored is not None:
                raise PermissionError("A frozen analysis plan is immutable; write a new version.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Analysis plans are kept: write a new version instead of deleting one.")


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


def snapshot_path(run: AnalysisRun, filename: str) -> str:
    return f"trials/{run.trial_id}/analysis/run-{run.number:03d}/{filename}"


class AnalysisRun(models.Model):
    """One execution of a frozen plan on a snapshot of the trial's data; the results are stored, never recomputed."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="analysis_runs")
    number = models.PositiveIntegerField(help_text="1, 2, … within the trial.")
    plan = models.ForeignKey(AnalysisPlan, on_delete=models.PROTECT, related_name="runs")
    plan_version = models.PositiveIntegerField()
    plan_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0–100, for the progress bar.")
    stage = models.CharField(max_length=200, blank=True, help_text="What the run is doing now, in words.")
    trial_status = models.CharField(max_length=12, help_text="The trial's status when the run was requested.")
    # Before unblinding the analysis sees the arms as X and Y; this mapping (code → arm) says which is which.
    # Selectors reveal it only once the trial is unblinded.
    arm_mapping = models.JSONField()
    # The secret random key from which the run's surrogate read and report ids are drawn (stats.dataset.surrogate_ids):
    # every view of the run's data, and the analysis itself, carry those ids, never the database's. Empty for a run
    # made before surrogates existed (its views carry database ids; its masked export is refused).
    id_key = models.CharField(max_length=64, blank=True, default="")
    dataset = models.FileField(upload_to=snapshot_path, max_length=300, blank=True)
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    dataset_rows = models.JSONField(default=dict, blank=True, help_text="Rows per entity in the snapshot.")
    code_version = models.JSONField(default=dict, blank=True)
    # The audit chain's head when the run finished ({count, hash, at}; trial.audit.anchor_head, also written to the
    # anchor file outside the database): the result names the exact audit trail it was computed beside.
    audit_anchor = models.JSONField(default=dict, blank=True)
    results = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["trial", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "number"], name="analysis_run_number_unique"),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in RunStatus]),
                                   name="analysis_run_status_valid"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="analysis_run_progress_range"),
            models.CheckConstraint(
                condition=~Q(status="done") | (Q(results__isnull=False) & Q(dataset_sha256__regex=r"^[0-9a-f]{64}$")),
                name="analysis_run_done_has_results",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code} analysis run {self.number} ({self.status})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = type(self).objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == RunStatus.DONE:
                raise PermissionError("A finished analysis run is immutable; start a new run.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Analysis runs are kept: they are the record of what was reported.")


class LookKind(models.TextChoices):
    BLINDED_SSR = "blinded_ssr", "Blinded sample-size re-estimation"
    SAFETY = "safety", "Safety (missed critical findings)"
    EFFICACY = "efficacy", "Efficacy (primary against the spending boundary)"


# Looks whose results are by arm: the data-monitoring committee's alone until unblinding (stats.selectors).
BY_ARM_KINDS = (LookKind.SAFETY, LookKind.EFFICACY)


def look_path(look: InterimLook, filename: str) -> str:
    return f"trials/{look.trial_id}/interim/look-{look.number:03d}/{filename}"


class InterimLook(models.Model):
    """One interim look at a running trial, taken once and kept: what was looked at (plan, dataset hash,
    information fraction), by whom, when, and what it showed. Written complete in one transaction; immutable."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="interim_looks")
    number = models.PositiveIntegerField(help_text="1, 2, … within the trial, every kind together.")
    kind = models.CharField(max_length=12, choices=LookKind.choices)
    sequence = models.PositiveIntegerField(help_text="1, 2, … within the trial and kind (the 2nd safety look).")
    plan = models.ForeignKey(AnalysisPlan, on_delete=models.PROTECT, related_name="interim_looks")
    plan_version = models.PositiveIntegerField()
    plan_sha256 = models.CharField(max_length=64)
    planned_fraction = models.FloatField(null=True, blank=True,
                                         help_text="The plan's information fraction for this look (empty: unplanned).")
    information_fraction = models.FloatField(help_text="Cases whose scoring is complete / planned cases.")
    cases_complete = models.PositiveIntegerField()
    planned_cases = models.PositiveIntegerField()
    trial_status = models.CharField(max_length=12, help_text="The trial's status when the look was taken.")
    dataset = models.FileField(upload_to=look_path, max_length=300)
    dataset_sha256 = models.CharField(max_length=64)
    results = models.JSONField()
    code_version = models.JSONField(default=dict, blank=True)
    performed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    performed_at = models.DateTimeField()
    seconds = models.FloatField()

    class Meta:
        ordering = ["trial", "number"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "number"], name="interim_look_number_unique"),
            models.UniqueConstraint(fields=["trial", "kind", "sequence"], name="interim_look_sequence_unique"),
            models.CheckConstraint(condition=Q(kind__in=[k.value for k in LookKind]), name="interim_look_kind_valid"),
            models.CheckConstraint(condition=Q(dataset_sha256__regex=r"^[0-9a-f]{64}$"),
                                   name="interim_look_has_dataset_hash"),
            models.CheckConstraint(condition=Q(information_fraction__gte=0), name="interim_look_fraction_range"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code} interim look {self.number} ({self.kind})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("An interim look is immutable: it is the record of what was seen.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Interim looks are kept: they are the record of what was seen, and by whom.")
