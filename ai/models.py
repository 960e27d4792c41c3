"""Registered model versions, which model drafts a trial's cases, and the drafts themselves."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from trial.models import Case, Trial


class Backend(models.TextChoices):
    JANUS = "janus", "Janus-Pro through transformers (local checkpoint)"
    HTTP = "http", "OpenAI-compatible server (chat completions with images)"


class ModelVersion(models.Model):
    name = models.SlugField(max_length=60, unique=True, help_text="e.g. janus-pro-cxr-stage2")
    description = models.TextField(blank=True)
    backend = models.CharField(max_length=10, choices=Backend.choices)
    path = models.CharField(max_length=500, blank=True, help_text="Local checkpoint folder (janus).")
    url = models.URLField(blank=True, help_text="Server base URL (http), e.g. http://gpu-1:8000/v1")
    server_model = models.CharField(max_length=200, blank=True, help_text="Model name the server expects (http).")
    # The key itself never enters the database: only the name of the environment variable holding it.
    api_key_env = models.CharField(max_length=100, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    n_parameters = models.BigIntegerField(null=True, blank=True)
    generation = models.JSONField(default=dict, help_text="GenerationSettings: prompt, roles, history, tokens.")
    is_demo = models.BooleanField(default=False, help_text="Trained on synthetic images: never for clinical use.")
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                      blank=True, related_name="+")
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-registered_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(backend="janus") & ~Q(path="")) | (Q(backend="http") & ~Q(url="")),
                name="model_version_has_location",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TrialModel(models.Model):
    """The model whose drafts the assisted arm of a trial sees: part of the intervention, fixed early."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="ai_model")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="trials")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_at = models.DateTimeField(auto_now_add=True)


class DraftStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class AIDraft(models.Model):
    """One draft per case and model version, whatever the retries (the unique constraint guarantees it)."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="ai_drafts")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="drafts")
    status = models.CharField(max_length=8, choices=DraftStatus.choices, default=DraftStatus.PENDING)
    text = models.TextField(blank=True)
    findings = models.TextField(blank=True)
    impression = models.TextField(blank=True)
    finding_scores = models.JSONField(default=dict, blank=True)
    score_source = models.CharField(max_length=20, blank=True)
    images = models.PositiveSmallIntegerField(
        default=1, help_text="How many images of the case's study the model was given (the frontal film first).")
    generated_tokens = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the draft failed, in words.")
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=64, blank=True, help_text="Celery task id working on it.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the case was first sent to an assisted reader: from then on the draft "
                                         "is what that reader was shown, and is never made again.")

    class Meta:
        ordering = ["case__code"]
        constraints = [
            models.UniqueConstraint(fields=["case", "model_version"], name="one_draft_per_case_and_model"),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in DraftStatus]), name="draft_status_valid"),
        ]

    def __str__(self) -> str:
        return f"draft of {self.case} by {self.model_version} ({self.status})"
