"""Django admin for staff: read-only, and without the text or answers (staff are not on the blinded side)."""
from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import Assignment, Item, ScoringSettings


@admin.register(ScoringSettings)
class ScoringSettingsAdmin(ReadOnlyAdmin):
    list_display = ("trial", "reference_standard", "ask_which_assisted", "canonical_text", "aligned_pair",
                    "adjudicator", "updated_at")


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ("trial", "kind", "created_at", "superseded_at")
    list_filter = ("kind",)
    exclude = ("unit",)


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ("item", "expert", "assigned_at", "opened_at")
    exclude = ("assisted_side", "key")
