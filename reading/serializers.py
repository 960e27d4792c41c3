"""Shapes of the reading API. The draft appears only where reading.selectors.visible_draft gives it."""
from rest_framework import serializers

from .models import Report


class EventSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=12)
    client_time = serializers.DateTimeField(required=False, allow_null=True)
    tab_id = serializers.CharField(max_length=64)


class TextSerializer(serializers.Serializer):
    findings = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=20_000)
    impression = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=20_000)
    finding_flags = serializers.DictField(child=serializers.BooleanField(), required=False, default=dict)
    base_version = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    tab_id = serializers.CharField(max_length=64, required=False, default="")


class CorrectionSerializer(serializers.Serializer):
    findings = serializers.CharField(allow_blank=True, max_length=20_000)
    impression = serializers.CharField(allow_blank=True, max_length=20_000)
    finding_flags = serializers.DictField(child=serializers.BooleanField(), required=False, default=dict)
    reason = serializers.CharField(allow_blank=True, max_length=2000)


class ReportSerializer(serializers.ModelSerializer):
    submitted_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Report
        fields = ["version", "findings", "impression", "finding_flags", "reason", "submitted_at", "signed_at"]
