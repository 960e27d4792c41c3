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
    dataset = models.FileField(upload_to=snapshot_path, max_length=300, blank=True)
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    dataset_rows = models.JSONField(default=dict, blank=True, help_text="Rows per entity in the snapshot.")
    code_version = models.JSONField(default=dict, blank=True)
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
