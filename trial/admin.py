"""Django admin for staff. Secrets (seed, UID key) are not fields here; the audit log is read-only."""
from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import Allocation, AuditEvent, Case, Invitation, Membership, Site, Trial


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "registration_id", "design", "status", "created_at")
    search_fields = ("code", "title", "registration_id")
    exclude = ("randomization_seed", "uid_secret")


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ("trial", "code", "name")


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("trial", "user", "role", "site", "pseudonym")
    list_filter = ("role",)


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ("trial", "email", "role", "created_at", "accepted_at")
    exclude = ("token",)


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ("trial", "code", "site", "modality", "enrolled_at")
    exclude = ("source_fingerprint",)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ("trial", "stratum", "position", "unit_type", "arm", "allocated_at")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "trial", "actor_name", "action", "object_type", "object_id")
    list_filter = ("action",)
