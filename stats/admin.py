"""Read-only admin views of plans and runs: they are written by services only (frozen plans and runs are immutable)."""
from django.contrib import admin

from core.admin import ReadOnlyAdmin as _ReadOnly

from .models import AnalysisPlan, AnalysisRun


@admin.register(AnalysisPlan)
class AnalysisPlanAdmin(_ReadOnly):
    list_display = ("trial", "version", "created_by", "created_at", "frozen_by", "frozen_at", "sha256")
    list_filter = ("trial",)


@admin.register(AnalysisRun)
class AnalysisRunAdmin(_ReadOnly):
    list_display = ("trial", "number", "status", "plan_version", "dataset_sha256", "requested_by", "requested_at")
    list_filter = ("trial", "status")
    # The arm mapping and the surrogate ids' key are left out on purpose: the admin is no back door to the allocation
    # before unblinding.
    exclude = ("arm_mapping", "results", "id_key")
