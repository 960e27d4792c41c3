"""Shapes of the scoring API, in and out. What an expert receives is built by scoring.selectors (an allow-list of
fields) and passes through the output shapes here, which are allow-lists too: never a ModelSerializer, so that no
field of a model can reach an expert by accident."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from .models import COMMENT_LIMIT, AiGuess

# ------------------------------------------------------------------------------------------ input


class CorrectableSerializer(serializers.Serializer):
    correction_reason = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                              max_length=COMMENT_LIMIT,
                                              help_text="Given only to correct an answer already submitted.")


class QualitySerializer(CorrectableSerializer):
    overall = serializers.IntegerField(help_text="1 (very poor) to 5 (excellent).")
    radpeer = serializers.CharField(max_length=2, help_text="1, 2a, 2b, 3a or 3b.")
    subscores = serializers.DictField(child=serializers.IntegerField(), required=False, default=dict)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)


class PreferenceSerializer(CorrectableSerializer):
    choice = serializers.CharField(max_length=4, help_text="A (left), B (right) or none (where allowed).")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)
    ai_guess = serializers.ChoiceField(
        choices=AiGuess.values, required=False, allow_blank=True, default="",
        help_text="Which report was written with AI assistance: A, B or unsure (can't tell). Required where the "
                  "trial asks it (the item's scale.ai_guess lists the answers), refused where it does not.")


class FindingsSerializer(CorrectableSerializer):
    marks = serializers.DictField(child=serializers.CharField(max_length=12),
                                  help_text="Every trial finding: present, absent or uncertain.")


class AdjudicationSerializer(serializers.Serializer):
    decisions = serializers.DictField(child=serializers.BooleanField(), help_text="finding → present (true/false).")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)


class SettingsSerializer(serializers.Serializer):
    subscores = serializers.ListField(child=serializers.DictField(), required=False)
    reference_standard = serializers.BooleanField(required=False)
    ask_which_assisted = serializers.BooleanField(
        required=False, help_text="Ask experts, on each pair, which report was written with AI assistance.")
    canonical_text = serializers.BooleanField(
        required=False, help_text="Show reports in the canonical wording and order (scoring.normalize).")
    aligned_pair = serializers.BooleanField(
        required=False, help_text="Show a pair's sections side by side in rows of equal height.")
    adjudicator = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                        help_text="The pseudonym of one of the trial's experts, or null for none.")


# ------------------------------------------------------------------------------------------ output: the expert


class ItemRowSerializer(serializers.Serializer):
    """One line of the expert's list: its place, kind and state, nothing of the case."""

    key = serializers.CharField()
    position = serializers.IntegerField()
    kind = serializers.CharField(help_text="reference, quality or pair.")
    label = serializers.CharField()
    done = serializers.BooleanField()
    available = serializers.BooleanField(help_text="False until the earlier items of the same radiograph are answered.")
    api_url = serializers.SerializerMethodField()

    def get_api_url(self, row) -> str:
        return reverse("api-scoring-item", args=[row.key])


class ItemListSerializer(serializers.Serializer):
    """One page of the expert's items (?limit=&offset=), with the expert's progress over all of them."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ItemRowSerializer(many=True)
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class ScoringImageSerializer(serializers.Serializer):
    display_url = serializers.CharField()
    values_url = serializers.CharField(allow_null=True, help_text="The 16-bit values image, once prepared.")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    windows = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()),
                                    help_text="Window presets of the viewer: name → [centre, width].")


class ScoringStudyImageSerializer(ScoringImageSerializer):
    """One image of the case's study, named by its position in the case (never a database id)."""

    position = serializers.IntegerField(min_value=1, help_text="1: the primary image (the same as `image`); then "
                                                               "the study's other images as received.")
    view_position = serializers.CharField(allow_blank=True, help_text="DICOM View Position: PA, AP, LL…")


class ShownReportSerializer(serializers.Serializer):
    side = serializers.CharField(allow_null=True, help_text="A (left) or B (right) in a comparison; null alone.")
    label = serializers.CharField()
    findings = serializers.CharField(allow_blank=True)
    impression = serializers.CharField(allow_blank=True)


class NumberChoiceSerializer(serializers.Serializer):
    value = serializers.IntegerField()
    label = serializers.CharField()


class TextChoiceSerializer(serializers.Serializer):
    value = serializers.CharField()
    label = serializers.CharField()


class SubscoreSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    help = serializers.CharField(allow_blank=True, required=False)


class ScaleSerializer(serializers.Serializer):
    """The answers the item's kind takes; the lists of the other kinds are empty."""

    likert = NumberChoiceSerializer(many=True)
    subscores = SubscoreSerializer(many=True)
    radpeer = TextChoiceSerializer(many=True)
    choices = TextChoiceSerializer(many=True)
    ai_guess = TextChoiceSerializer(many=True, help_text="pair, where the trial asks which report was written with "
                                                         "AI assistance: the answers; empty otherwise.")
    marks = TextChoiceSerializer(many=True)


class AnswerSerializer(serializers.Serializer):
    """The expert's own latest answer: the fields of the item's kind only."""

    version = serializers.IntegerField()
    correction_reason = serializers.CharField(allow_blank=True)
    overall = serializers.IntegerField(required=False, help_text="quality")
    subscores = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="quality")
    radpeer = serializers.CharField(required=False, help_text="quality")
    comment = serializers.CharField(required=False, allow_blank=True, help_text="quality")
    choice = serializers.CharField(required=False, help_text="pair: A, B or none")
    reason = serializers.CharField(required=False, allow_blank=True, help_text="pair")
    ai_guess = serializers.CharField(required=False, allow_blank=True,
                                     help_text="pair: A, B, unsure, or empty where the trial does not ask it")
    marks = serializers.DictField(child=serializers.CharField(), required=False, help_text="reference: finding → mark")


class ItemUrlsSerializer(serializers.Serializer):
    self = serializers.CharField()
    page = serializers.CharField()
    answer = serializers.CharField()
    open = serializers.CharField(help_text="POST here when the item is shown: its time starts then.")


class ItemSerializer(serializers.Serializer):
    """One item as its expert sees it (scoring.selectors.item_view): no arm, reader, draft, site, date or case."""

    key = serializers.CharField()
    kind = serializers.CharField(help_text="reference, quality or pair.")
    label = serializers.CharField()
    position = serializers.IntegerField(allow_null=True)
    of = serializers.IntegerField()
    available = serializers.BooleanField()
    replaced = serializers.BooleanField(help_text="A report in it was corrected: answer the replacement instead.")
    replacement_key = serializers.CharField(allow_null=True)
    open = serializers.BooleanField(help_text="Whether the trial takes answers now.")
    image = ScoringImageSerializer(allow_null=True, help_text="Null until the item is available.")
    images = ScoringStudyImageSerializer(many=True, help_text="Every image of the case's study, the primary (`image`) "
                                                              "first; empty until the item is available.")
    clinical_history = serializers.CharField(allow_blank=True)
    reports = ShownReportSerializer(many=True)
    aligned = serializers.BooleanField(help_text="pair: show the two reports' sections side by side, in rows of "
                                                 "equal height (the trial's presentation).")
    findings = serializers.ListField(child=serializers.CharField(), help_text="The trial's findings (reference).")
    scale = ScaleSerializer()
    answer = AnswerSerializer(allow_null=True)
    next_key = serializers.CharField(allow_null=True)
    urls = ItemUrlsSerializer()
    next_url = serializers.CharField(allow_null=True)


# ------------------------------------------------------------------------------------------ output: the adjudicator


class AdjudicationRowSerializer(serializers.Serializer):
    """A case of the adjudication queue, by opaque key: no case code, no votes."""

    key = serializers.CharField()
    number = serializers.IntegerField()
    pending = serializers.ListField(child=serializers.CharField(), help_text="Findings still to decide.")
    adjudicated = serializers.ListField(child=serializers.CharField(), help_text="Findings already decided.")
    api_url = serializers.SerializerMethodField()

    def get_api_url(self, row) -> str:
        return reverse("api-scoring-adjudicate", args=[self.context["code"], row["key"]])


class DisputedFindingSerializer(serializers.Serializer):
    finding = serializers.CharField()
    pending = serializers.BooleanField()
    decision = serializers.BooleanField(allow_null=True, help_text="The adjudicator's own earlier decision, if any.")


class AdjudicationViewSerializer(serializers.Serializer):
    key = serializers.CharField()
    image = ScoringImageSerializer()
    images = ScoringStudyImageSerializer(many=True, help_text="Every image of the case's study, the primary first.")
    clinical_history = serializers.CharField(allow_blank=True)
    findings = DisputedFindingSerializer(many=True)


# ------------------------------------------------------------------------------------------ output: investigators


class CompletionSerializer(serializers.Serializer):
    assigned = serializers.IntegerField()
    done = serializers.IntegerField()


class ExpertProgressSerializer(CompletionSerializer):
    pseudonym = serializers.CharField()
    username = serializers.CharField()
    reference = CompletionSerializer()
    quality = CompletionSerializer()
    pair = CompletionSerializer()


class ItemCountsSerializer(serializers.Serializer):
    reference = serializers.IntegerField()
    quality = serializers.IntegerField()
    pair = serializers.IntegerField()


class ProgressSerializer(serializers.Serializer):
    """Completion only: counts per expert and per kind; no score, preference or vote until unblinding."""

    experts = ExpertProgressSerializer(many=True)
    items = ItemCountsSerializer(help_text="Current (not superseded) items of each kind.")
    superseded = serializers.IntegerField()
    units_ready_not_built = serializers.IntegerField()
    reference = serializers.DictField(child=serializers.IntegerField(),
                                      help_text="Reference-standard findings by how they were decided.")
    adjudicator = serializers.CharField(allow_null=True)
    eligible_experts = serializers.IntegerField()
    problems = serializers.ListField(child=serializers.CharField())


class BuildSerializer(serializers.Serializer):
    created = serializers.DictField(child=serializers.IntegerField(), help_text="Items created, by kind.")
    superseded = serializers.IntegerField(help_text="Items replaced because a report in them was corrected.")
    progress = ProgressSerializer()


class SettingsOutputSerializer(serializers.Serializer):
    subscores = SubscoreSerializer(many=True)
    reference_standard = serializers.BooleanField()
    ask_which_assisted = serializers.BooleanField()
    canonical_text = serializers.BooleanField()
    aligned_pair = serializers.BooleanField()
    adjudicator = serializers.CharField(source="adjudicator.pseudonym", allow_null=True, default=None)


# ------------------------------------------------------------------------------------------ output: results


class _AnswerRowSerializer(serializers.Serializer):
    trial = serializers.CharField()
    case = serializers.CharField()
    site = serializers.CharField()
    item = serializers.IntegerField()
    item_superseded = serializers.BooleanField()
    expert = serializers.CharField()
    position = serializers.IntegerField()
    version = serializers.IntegerField()
    corrected = serializers.BooleanField()
    opened_at = serializers.DateTimeField(allow_null=True)
    submitted_at = serializers.DateTimeField()
    seconds = serializers.FloatField(allow_null=True)


class QualityRowSerializer(_AnswerRowSerializer):
    """Also one sub_<key> field (1–5) per sub-score the expert gave."""

    arm = serializers.CharField()
    reader = serializers.CharField()
    period = serializers.IntegerField()
    read = serializers.IntegerField()
    report = serializers.IntegerField()
    report_version = serializers.IntegerField()
    overall = serializers.IntegerField()
    radpeer = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)

    def to_representation(self, row):
        data = super().to_representation(row)
        data.update({k: v for k, v in row.items() if k.startswith("sub_")})
        return data


class PreferenceRowSerializer(_AnswerRowSerializer):
    reader_assisted = serializers.CharField()
    reader_standard = serializers.CharField()
    report_assisted = serializers.IntegerField()
    report_standard = serializers.IntegerField()
    assisted_side = serializers.CharField(help_text="A: the left report.")
    left_arm = serializers.CharField()
    choice = serializers.CharField()
    preferred_arm = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    ai_guess = serializers.CharField(allow_blank=True, help_text="Which report the expert named as written with AI "
                                                                 "assistance: A, B, unsure; empty if not asked.")
    guess_arm = serializers.CharField(allow_null=True, help_text="The arm of the report the expert named; null for "
                                                                 "unsure or not asked.")


class FindingVoteRowSerializer(_AnswerRowSerializer):
    finding = serializers.CharField()
    mark = serializers.CharField()


class ReferenceRowSerializer(serializers.Serializer):
    trial = serializers.CharField()
    case = serializers.CharField()
    site = serializers.CharField()
    finding = serializers.CharField()
    present = serializers.BooleanField(allow_null=True)
    method = serializers.CharField()
    votes_present = serializers.IntegerField()
    votes_absent = serializers.IntegerField()
    votes_uncertain = serializers.IntegerField()
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class ResultsSerializer(serializers.Serializer):
    """The scoring data set (scoring.selectors.analysis_rows), long format, after unblinding."""

    quality = QualityRowSerializer(many=True)
    preference = PreferenceRowSerializer(many=True)
    finding_votes = FindingVoteRowSerializer(many=True)
    reference_standard = ReferenceRowSerializer(many=True)
