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
