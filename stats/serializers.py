"""Serializers of the stats API: plans and runs (run results pass through as the selector shaped them)."""
from __future__ import annotations

from rest_framework import serializers

from .models import AnalysisPlan


class PlanSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    frozen_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    is_frozen = serializers.BooleanField(read_only=True)

    class Meta:
        model = AnalysisPlan
        fields = ["version", "content", "created_by", "created_at", "updated_at", "is_frozen", "frozen_by",
                  "frozen_at", "sha256"]
        read_only_fields = fields


class PlanContentSerializer(serializers.Serializer):
    content = serializers.JSONField(help_text="The plan document (see the analysis page for its fields).")


class RunListItemSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    plan_version = serializers.IntegerField()
    plan_sha256 = serializers.CharField()
    dataset_sha256 = serializers.CharField()
    requested_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()


class RunProgressSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    stage = serializers.CharField()
    error = serializers.CharField()
    done = serializers.BooleanField()
