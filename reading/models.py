"""Reads (one reader, one case, one arm), their event log, autosaved text, reports and sign-offs."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from trial.models import Arm, Case, Membership, Trial

# The limits of what a reader types, enforced by the services and declared by the forms and the API.
REPORT_TEXT_LIMIT = 20_000     # characters of FINDINGS, and of IMPRESSION
CORRECTION_REASON_LIMIT = 2000
TAB_ID_LENGTH = 64


class ReadStatus(models.TextChoices):
    ASSIGNED = "assigned", "Not started"
    IN_PROGRESS = "in_progress", "In progress"
    SUBMITTED = "submitted", "Submitted"
    # Its reader was withdrawn before submitting: the case went to another reader of the arm; what was typed stays.
    REROUTED = "rerouted", "Re-routed"
    # Its case was withdrawn before the read was submitted: read no further; what was typed stays.
    CASE_WITHDRAWN = "withdrawn", "Case withdrawn"


# Reads that hold their reader's work now, and reads closed before they were submitted (another read replaced them,
# or their case left the trial): neither kind counts as a read of its case and arm once closed.
OPEN_READ_STATUSES = (ReadStatus.ASSIGNED, ReadStatus.IN_PROGRESS)
CLOSED_READ_STATUSES = (ReadStatus.REROUTED, ReadStatus.CASE_WITHDRAWN)


class Read(models.Model):
    """A case on a reader's worklist in one arm. Routing writes it; the reader fills it."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="reads")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reads")
    reader = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="reads")
    arm = models.CharField(max_length=10, choices=Arm.choices)
    period = models.PositiveSmallIntegerField(default=1, help_text="Crossover: 1st or 2nd read of the case.")
    # The reader's order: a random key drawn once at routing and stored (never recomputed from a seed
    # at query time). The worklist sorts by it; its rank is the "n" of "n of N".
    order_key = models.BigIntegerField()
    available_from = models.DateTimeField(null=True, blank=True, help_text="Crossover washout: not before.")
    status = models.CharField(max_length=12, choices=ReadStatus.choices, default=ReadStatus.ASSIGNED)
    # When the server first sent the case to its reader (reading page or read API): reading time starts there.
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    wall_seconds = models.FloatField(null=True, blank=True)
    active_seconds = models.FloatField(null=True, blank=True)
    routed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reader", "order_key"]
        constraints = [
            models.UniqueConstraint(fields=["case", "reader", "arm"], name="read_once_per_reader_and_arm"),
            models.UniqueConstraint(fields=["reader", "order_key"], name="read_order_unique_per_reader"),
            models.CheckConstraint(condition=Q(arm__in=[a.value for a in Arm]), name="read_arm_valid"),
        ]
        indexes = [models.Index(fields=["trial", "status"])]

    def __str__(self) -> str:
        return f"{self.case} by {self.reader.pseudonym} ({self.arm})"


class ReadEvent(models.Model):
    """What happened on the reading screen, stamped by the server's clock (the client's is kept, not trusted)."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        IMAGE_SHOWN = "image_shown"
        FIRST_EDIT = "first_edit"
        HIDDEN = "hidden"
        VISIBLE = "visible"
        IDLE = "idle"
        RESUMED = "resumed"
        HEARTBEAT = "heartbeat"
        AUTOSAVED = "autosaved"
        SUBMITTED = "submitted"

    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    tab_id = models.CharField(max_length=TAB_ID_LENGTH)
    server_time = models.DateTimeField()
    client_time = models.DateTimeField(null=True, blank=True)
    clock_skew_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["server_time", "id"]
        indexes = [models.Index(fields=["read", "server_time"])]


class ReportDraft(models.Model):
    """The autosaved text of an unfinished read. `version` detects a stale tab: no silent overwrite."""

    read = models.OneToOneField(Read, on_delete=models.PROTECT, related_name="saved")
    findings = models.TextField(blank=True)
    impression = models.TextField(blank=True)
    finding_flags = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=0)
    tab_id = models.CharField(max_length=TAB_ID_LENGTH, blank=True)
    saved_at = models.DateTimeField()

    def as_dict(self) -> dict:
        return {"findings": self.findings, "impression": self.impression, "finding_flags": self.finding_flags,
                "version": self.version, "saved_at": self.saved_at.isoformat()}


class Report(models.Model):
    """A submitted report: immutable. A correction is a new version with a reason; old versions stay."""

    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="reports")
    version = models.PositiveSmallIntegerField()
    findings = models.TextField(blank=True)
    impression = models.TextField()
    finding_flags = models.JSONField(default=dict)
    reason = models.TextField(blank=True, help_text="Why this version replaces the previous one.")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    # How much of the AI draft survived (assisted arm): a signal of automation bias.
    draft_edit_distance = models.FloatField(null=True, blank=True, help_text="Normalized Levenshtein, 0 = unchanged.")
    draft_kept_share = models.FloatField(null=True, blank=True, help_text="Share of draft characters kept.")
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    signed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["read", "version"]
        constraints = [
            models.UniqueConstraint(fields=["read", "version"], name="report_version_unique"),
            models.CheckConstraint(condition=~Q(impression=""), name="report_has_impression"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            # Only the sign-off stamp may be added to a stored report; its text never changes.
            update_fields = set(kwargs.get("update_fields") or ())
            if not update_fields or not update_fields <= {"signed_by", "signed_at"}:
                raise PermissionError("A submitted report is immutable; write a new version with a reason.")
        super().save(*args, **kwargs)


class RecordReport(models.Model):
    """The clinical report of record that a senior writes from a case's two signed reports, where the trial's release
    policy says so (trial.ReleasePolicy.SENIOR). Written once and signed in one act; never changed."""

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="record_report")
    findings = models.TextField(blank=True)
    impression = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(impression=""), name="record_report_has_impression")]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("A report of record is never changed.")
        super().save(*args, **kwargs)
