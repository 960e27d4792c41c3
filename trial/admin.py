"""Django admin for staff. Secrets (seed, UID key, token hashes, authenticator keys) are not fields here; the audit
log is read-only; allocation arms and audit payloads stay hidden until the trial is unblinded; every change to users,
groups, permissions, second factors and tokens is an audit event (written here in save_model, save_related and
delete_model, or by the services the actions call). Nobody mints a token for anyone else: there is no add."""
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db import transaction

from core.admin import ReadOnlyAdmin
from core.security import ThrottledAdminAuthenticationForm

from . import services
from .models import Allocation, ApiToken, AuditEvent, Case, Invitation, Membership, Site, Status, Trial

User = get_user_model()
MASKED = "masked until unblinding"

# /admin/login/ sends people to the one login page; should anything reach the admin's own form, it is throttled alike.
admin.site.login_form = ThrottledAdminAuthenticationForm


def _unblinded(trial) -> bool:
    return trial is not None and trial.status == Status.UNBLINDED


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
    list_display = ("trial", "email", "role", "created_at", "expires_at", "accepted_at")
    exclude = ("token",)


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ("trial", "code", "site", "modality", "enrolled_at")
    exclude = ("source_fingerprint",)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    """The arm is shown once the trial is unblinded; before, neither the list, the record nor a filter names it."""

    list_display = ("trial", "stratum", "position", "unit_type", "arm_if_unblinded", "allocated_at")
    readonly_fields = ("arm_if_unblinded",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("trial")

    def get_exclude(self, request, obj=None):
        return ("arm", "block", "block_size")  # the block's size and place predict the arms around it

    @admin.display(description="arm")
    def arm_if_unblinded(self, obj):
        return obj.arm if _unblinded(obj.trial) else MASKED


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """A trial's events show their payload (arms, outcomes) once the trial is unblinded; account events at once."""

    list_display = ("id", "created_at", "trial", "actor_name", "action", "object_type", "object_id")
    list_filter = ("action",)
    exclude = ("payload",)
    readonly_fields = ("payload_if_unblinded",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("trial")

    @admin.display(description="payload")
    def payload_if_unblinded(self, obj):
        return obj.payload if obj.trial_id is None or _unblinded(obj.trial) else MASKED


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by their owners, on their account page; here staff can only see and revoke them."""

    list_display = ("prefix", "user", "trial", "name", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("trial",)
    exclude = ("key_hash",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            services.revoke_api_token(token=token, by=request.user)
        messages.success(request, f"{queryset.count()} token(s) revoked.")


# ------------------------------------------------------------------------------------------ accounts, audited

def _rights(user) -> dict[str, list[str]]:
    if user.pk is None:
        return {"groups": [], "user_permissions": []}
    return {"groups": sorted(user.groups.values_list("name", flat=True)),
            "user_permissions": services.permission_names(user.user_permissions.select_related("content_type"))}


def _group_rights(group) -> dict[str, list[str]]:
    if group.pk is None:
        return {"permissions": []}
    return {"permissions": services.permission_names(group.permissions.select_related("content_type"))}


for model in (User, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
# django-otp's device admins show the authenticator's key (and a QR code of it) and the recovery codes: whoever
# sees them can give someone else's second factor. Staff reset a second factor from the user's page instead.
for label in ("otp_totp.TOTPDevice", "otp_static.StaticDevice"):
    model = apps.get_model(label)
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    actions = ["reset_second_factor"]

    def save_model(self, request, obj, form, change):
        before = services.user_snapshot(User.objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        services.record_user_saved(by=request.user, user=obj, before=before)

    def save_related(self, request, form, formsets, change):
        user = form.instance
        before = _rights_before(user)
        super().save_related(request, form, formsets, change)
        services.record_access_rights(by=request.user, obj=user, before=before, after=_rights(user))

    def delete_model(self, request, obj):
        services.record_account_change(by=request.user, action="account.user_deleted", obj=obj,
                                       payload={"before": services.user_snapshot(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            services.record_account_change(by=request.user, action="account.user_deleted", obj=user,
                                           payload={"before": services.user_snapshot(user)})
        super().delete_queryset(request, queryset)

    def user_change_password(self, request, id, form_url=""):
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                user = User.objects.get(pk=id)
                services.record_account_change(by=request.user, action="account.password_set_by_admin", obj=user,
                                               payload={"user": user.pk})
        return response

    @admin.action(description="Reset the second factor (they set up a new one at their next login)")
    def reset_second_factor(self, request, queryset):
        for user in queryset:
            services.reset_second_factor(user=user, by=request.user)
        messages.success(request, f"Second factor reset for {queryset.count()} account(s).")


def _rights_before(user) -> dict[str, list[str]]:
    # The rights as stored before this save: the form has not written its many-to-many fields yet.
    if user.pk is None:
        return {"groups": [], "user_permissions": []}
    return _rights(User.objects.get(pk=user.pk))


@admin.register(Group)
class AuditedGroupAdmin(GroupAdmin):
    def save_model(self, request, obj, form, change):
        before = Group.objects.filter(pk=obj.pk).values_list("name", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        if before is None:
            services.record_account_change(by=request.user, action="account.group_created", obj=obj,
                                           payload={"name": obj.name})
        elif before != obj.name:
            services.record_account_change(by=request.user, action="account.group_renamed", obj=obj,
                                           payload={"before": before, "after": obj.name})

    def save_related(self, request, form, formsets, change):
        group = form.instance
        before = _group_rights(Group.objects.get(pk=group.pk)) if change else {"permissions": []}
        super().save_related(request, form, formsets, change)
        services.record_access_rights(by=request.user, obj=group, before=before, after=_group_rights(group))

    def delete_model(self, request, obj):
        services.record_account_change(by=request.user, action="account.group_deleted", obj=obj,
                                       payload={"name": obj.name, **_group_rights(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for group in queryset:
            services.record_account_change(by=request.user, action="account.group_deleted", obj=group,
                                           payload={"name": group.name, **_group_rights(group)})
        super().delete_queryset(request, queryset)
