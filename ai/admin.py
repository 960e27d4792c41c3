from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import AIDraft, ModelVersion, TrialModel


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "backend", "is_demo", "n_parameters", "registered_at")


@admin.register(TrialModel)
class TrialModelAdmin(ReadOnlyAdmin):
    list_display = ("trial", "model_version", "assigned_at")


@admin.register(AIDraft)
class AIDraftAdmin(ReadOnlyAdmin):
    list_display = ("case", "model_version", "status", "attempts", "finished_at")
    list_filter = ("status",)
