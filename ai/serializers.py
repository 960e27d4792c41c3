"""Shapes of the ai API: model versions, draft states (never the text: that is for the assisted arm), progress."""
from rest_framework import serializers

from .models import AIDraft, ModelVersion


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["name", "description", "backend", "weights_sha256", "n_parameters", "generation", "is_demo",
                  "registered_at"]


class DraftStateSerializer(serializers.ModelSerializer):
    """The pipeline view for investigators: state, not text (text is for the assisted arm's readers)."""

    case = serializers.CharField(source="case.code")
    model = serializers.CharField(source="model_version.name")

    class Meta:
        model = AIDraft
        fields = ["id", "case", "model", "status", "error", "attempts", "generated_tokens", "seconds",
                  "created_at", "finished_at"]


class AssignModelSerializer(serializers.Serializer):
    model = serializers.SlugRelatedField(slug_field="name", queryset=ModelVersion.objects.all())


class DraftProgressSerializer(serializers.Serializer):
    """How many of the trial's cases have a draft of the trial's model in each state, and how many have none."""

    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    ready = serializers.IntegerField()
    failed = serializers.IntegerField()
    missing = serializers.IntegerField(help_text="Cases without a draft of the trial's model.")
    total = serializers.IntegerField(help_text="Cases enrolled.")
