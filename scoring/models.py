"""Blinded scoring: items (quality, pair, findings), their experts, and what the experts answered.

An item freezes what an expert is shown: the normalized text of a specific report version, with its
hash. Items are never edited: when a report changes, the item is superseded and a new one is built.
Answers (quality scores, preferences, findings votes) are never edited either: a correction is a new
version with a reason. Nothing in this file is shown to an expert except through scoring.selectors.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from reading.models import Read, Report
from trial.models import Case, Membership, Trial

from . import radpeer as radpeer_scale


def default_subscores() -> list[dict]:
    return [
        {"key": "accuracy", "label": "Accuracy", "help": "Findings and impression are correct."},
        {"key": "completeness", "label": "Completeness", "help": "Nothing relevant is missing."},
        {"key": "clarity", "label": "Clarity", "help": "Clear, concise and well organised."},
    ]


class ScoringSettings(models.Model):
    """What the trial asks of its experts, beyond the Trial's own fields (experts_per_item, allow_no_preference)."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="scoring_settings")
    # Optional sub-scores, each on the same 5-point scale as the overall score; frozen once items exist.
    subscores = models.JSONField(default=default_subscores, blank=True)
    # Whether experts mark each trial finding present/absent per case (the detection endpoints' reference).
    reference_standard = models.BooleanField(default=True)
    # An expert chosen by the investigator to settle findings on which the panel has no majority.
    adjudicator = models.ForeignKey(Membership, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # The experts' optional blinding question on each pair: which report was written with AI assistance (A, B or
    # can't tell); Bang's blinding index is computed from the answers. Frozen once items exist.
    ask_which_assisted = models.BooleanField(default=False)
    # How reports are shown (scoring.normalize): the canonical wording and anatomical order narrow the style cue
    # of an edited AI draft; frozen once items exist, since items freeze the text they show.
    canonical_text = models.BooleanField(default=False)
    # The pair's two reports in aligned rows (findings beside findings, impression beside impression), equal in
    # height: the shorter one is padded with empty space, never cut. Frozen once items exist (one look per trial).
    aligned_pair = models.BooleanField(default=False)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)


class ItemKind(models.TextChoices):
    REFERENCE = "reference", "Findings on the radiograph"
    QUALITY = "quality", "Report quality"
    PAIR = "pair", "Report comparison"


# Per case, an expert answers in this order: the image alone, then each report alone, then the two
# side by side, so that no judgement is coloured by a report seen before (or by the other report).
PHASE = {ItemKind.REFERENCE: 1, ItemKind.QUALITY: 2, ItemKind.PAIR: 3}


class Item(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="scoring_items")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="scoring_items")
    kind = models.CharField(max_length=10, choices=ItemKind.choices)
    phase = models.PositiveSmallIntegerField()
    # What the item is about: "r:<case>", "q:<read>", "p:<read>-<read>". One current item per unit.
    unit = models.CharField(max_length=60)
    # Opaque id for the adjudicator's pages (never the primary key: its order would tell when it was made).
    key = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField()
    superseded_at = models.DateTimeField(null=True, blank=True)
    superseded_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["trial", "id"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "unit"], condition=Q(superseded_at__isnull=True),
                                    name="one_current_item_per_unit"),
            models.CheckConstraint(condition=Q(kind__in=[k.value for k in ItemKind]), name="item_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} item {self.pk} ({self.unit})"


class ShownReport(models.Model):
    """One report version as shown in an item: the normalized text, frozen, and its hash."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="shown_reports")
    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="+")
    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="+")
    report_version = models.PositiveSmallIntegerField()
    arm = models.CharField(max_length=10)  # copied from the read for the analysis; never leaves the server blinded
    findings = models.TextField(blank=True)
    impression = models.TextField()
    text_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["item", "id"]
        constraints = [models.UniqueConstraint(fields=["item", "read"], name="shown_report_once_per_item")]


class Side(models.TextChoices):
    A = "A", "Report A (left)"
    B = "B", "Report B (right)"


class Assignment(models.Model):
    """One item on one expert's list, in a random order drawn once and stored (never recomputed)."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="assignments")
    expert = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="scoring_assignments")
    key = models.CharField(max_length=32, unique=True, help_text="Opaque id in the expert's URLs.")
    order_key = models.BigIntegerField()
    # Pair items: the side ("A" = left) on which this expert sees the assisted report; balanced per expert.
    assisted_side = models.CharField(max_length=1, choices=Side.choices, blank=True)
    assigned_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When the expert's screen first opened the item (a POST).")

    class Meta:
        ordering = ["expert", "item__phase", "order_key"]
        constraints = [
            models.UniqueConstraint(fields=["item", "expert"], name="assignment_once_per_expert"),
            models.UniqueConstraint(fields=["expert", "order_key"], name="assignment_order_unique"),
            models.CheckConstraint(condition=Q(assisted_side__in=["", "A", "B"]), name="assignment_side_valid"),
        ]


class ImmutableAnswer(models.Model):
    """Common shape of an answer: versioned, written once; a correction is the next version with a reason."""

    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="%(class)ss")
    version = models.PositiveSmallIntegerField()
    correction_reason = models.TextField(blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("A submitted answer is final; a correction is a new version with a reason.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("A submitted answer is never deleted.")


# The limits of what an expert types and of a trial's scoring form, enforced by the services, declared by forms and API.
COMMENT_LIMIT = 4000   # a comment, a reason, a correction reason
MAX_SUBSCORES = 8


class Radpeer(models.TextChoices):
    CONCUR = "1", radpeer_scale.LABELS["1"]
    MINOR_UNLIKELY = "2a", radpeer_scale.LABELS["2a"]
    MINOR_LIKELY = "2b", radpeer_scale.LABELS["2b"]
    MAJOR_UNLIKELY = "3a", radpeer_scale.LABELS["3a"]
    MAJOR_LIKELY = "3b", radpeer_scale.LABELS["3b"]


# Anchored labels of the 5-point quality scale (overall and each sub-score).
LIKERT = {
    1: "Very poor: major errors or omissions; unusable",
    2: "Poor: significant errors or omissions; needs substantial revision",
    3: "Acceptable: minor errors or omissions; usable with changes",
    4: "Good: accurate and complete, with trivial issues only",
    5: "Excellent: accurate, complete and clear; no change needed",
}


class QualityScore(ImmutableAnswer):
    overall = models.PositiveSmallIntegerField()
    subscores = models.JSONField(default=dict, blank=True)
    radpeer = models.CharField(max_length=2, choices=Radpeer.choices)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["assignment", "version"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "version"], name="quality_score_version_unique"),
            models.CheckConstraint(condition=Q(overall__gte=1) & Q(overall__lte=5), name="quality_overall_1_to_5"),
            models.CheckConstraint(condition=Q(radpeer__in=[r.value for r in Radpeer]), name="quality_radpeer_valid"),
        ]


class Choice(models.TextChoices):
    A = "A", "Report A"
    B = "B", "Report B"
    NONE = "none", "No preference"


class AiGuess(models.TextChoices):
    """The expert's answer to "Which report was written with AI assistance?" (the trial may not ask it)."""

    A = "A", "Report A"
    B = "B", "Report B"
    UNSURE = "unsure", "Can't tell"


class Preference(ImmutableAnswer):
    choice = models.CharField(max_length=4, choices=Choice.choices)
    reason = models.TextField(blank=True)
    # Empty when the trial does not ask (ScoringSettings.ask_which_assisted); the side named, or "unsure".
    ai_guess = models.CharField(max_length=6, choices=AiGuess.choices, blank=True, default="")

    class Meta:
        ordering = ["assignment", "version"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "version"], name="preference_version_unique"),
            models.CheckConstraint(condition=Q(choice__in=[c.value for c in Choice]), name="preference_choice_valid"),
            models.CheckConstraint(condition=Q(ai_guess__in=["", *[g.value for g in AiGuess]]),
                                   name="preference_ai_guess_valid"),
        ]


class Mark(models.TextChoices):
    PRESENT = "present", "Present"
    ABSENT = "absent", "Absent"
    UNCERTAIN = "uncertain", "Uncertain"


class FindingVote(ImmutableAnswer):
    """One expert's marks of every trial finding on one case's radiograph: {finding: present|absent|uncertain}."""

    marks = models.JSONField()

    class Meta:
        ordering = ["assignment", "version"]
        constraints = [models.UniqueConstraint(fields=["assignment", "version"], name="finding_vote_version_unique")]


class ReferenceMethod(models.TextChoices):
    MAJORITY = "majority", "Majority of the panel"
    ADJUDICATED = "adjudicated", "Adjudicated"
    PENDING = "pending", "Awaiting adjudication"


class ReferenceStandard(models.Model):
    """The reference for one finding on one case, decided once the whole panel has marked it.

    Present (or absent) when more than half of the panel says so; otherwise (a tie, or too many
    "uncertain") it waits in the adjudicator's queue. Re-decided, and audited, if a vote is corrected.
    """

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="reference_standards")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reference_standards")
    finding = models.CharField(max_length=60)
    present = models.BooleanField(null=True)
    method = models.CharField(max_length=12, choices=ReferenceMethod.choices)
    votes_present = models.PositiveSmallIntegerField()
    votes_absent = models.PositiveSmallIntegerField()
    votes_uncertain = models.PositiveSmallIntegerField()
    decided_by = models.ForeignKey(Membership, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["case", "finding"]
        constraints = [
            models.UniqueConstraint(fields=["case", "finding"], name="reference_once_per_case_finding"),
            models.CheckConstraint(condition=Q(method="pending", present__isnull=True)
                                   | (~Q(method="pending") & Q(present__isnull=False)),
                                   name="reference_pending_has_no_value"),
        ]


class Adjudication(models.Model):
    """The adjudicator's decision on one finding of one case; kept even if later votes make a majority."""

    reference = models.ForeignKey(ReferenceStandard, on_delete=models.PROTECT, related_name="adjudications")
    present = models.BooleanField()
    reason = models.TextField(blank=True)
    adjudicator = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["reference", "decided_at"]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("An adjudication is final; adjudicate again to replace it.")
        super().save(*args, **kwargs)
