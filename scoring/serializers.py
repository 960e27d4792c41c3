"""Shapes of the scoring API's input. Output is built by scoring.selectors (an allow-list), never by a
ModelSerializer, so that no field of a model can reach an expert by accident."""
from rest_framework import serializers

from .models import COMMENT_LIMIT


class CorrectableSerializer(serializers.Serializer):
    correction_reason = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=COMMENT_LIMIT,
                                              help_text="Given only to correct an answer already submitted.")


class QualitySerializer(CorrectableSerializer):
    overall = serializers.IntegerField(help_text="1 (very poor) to 5 (excellent).")
    radpeer = serializers.CharField(max_length=2, help_text="1, 2a, 2b, 3a or 3b.")
    subscores = serializers.DictField(child=serializers.IntegerField(), required=False, default=dict)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)


class PreferenceSerializer(CorrectableSerializer):
    choice = serializers.CharField(max_length=4, help_text="A (left), B (right) or none (where allowed).")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)


class FindingsSerializer(CorrectableSerializer):
    marks = serializers.DictField(child=serializers.CharField(max_length=12),
                                  help_text="Every trial finding: present, absent or uncertain.")


class AdjudicationSerializer(serializers.Serializer):
    decisions = serializers.DictField(child=serializers.BooleanField(), help_text="finding → present (true/false).")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=COMMENT_LIMIT)


class SettingsSerializer(serializers.Serializer):
    subscores = serializers.ListField(child=serializers.DictField(), required=False)
    reference_standard = serializers.BooleanField(required=False)
    adjudicator = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                        help_text="The pseudonym of one of the trial's experts, or null for none.")


def settings_payload(scoring_settings) -> dict:
    return {"subscores": scoring_settings.subscores, "reference_standard": scoring_settings.reference_standard,
            "adjudicator": scoring_settings.adjudicator.pseudonym if scoring_settings.adjudicator else None}
