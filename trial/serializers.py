"""API shapes. No serializer names the randomization seed, the UID secret or a case's identity."""
from __future__ import annotations

from rest_framework import serializers

from .models import (
    BLOCK_MULTIPLE_RANGE,
    CLINICAL_HISTORY_LIMIT,
    EXPERTS_PER_ITEM_RANGE,
    FINDING_NAME_LENGTH,
    RATIO_RANGE,
    REGISTRATION_ID_LENGTH,
    TITLE_LENGTH,
    TRIAL_CODE_LENGTH,
    WASHOUT_DAYS_RANGE,
    Allocation,
    Case,
    Design,
    Membership,
    Role,
    Site,
    Status,
    Trial,
)


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = [
            "code", "title", "registration_id", "design", "status", "findings", "experts_per_item",
            "allow_no_preference", "washout_days", "require_signoff", "second_factor_for_all", "ratio_assisted",
            "ratio_standard", "block_multiples", "fixed_block_reason", "created_at",
        ]
        read_only_fields = ["status", "created_at"]


class TrialCreateSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=TRIAL_CODE_LENGTH)
    title = serializers.CharField(max_length=TITLE_LENGTH)
    registration_id = serializers.CharField(max_length=REGISTRATION_ID_LENGTH, required=False, allow_blank=True)
    design = serializers.ChoiceField(choices=Design.choices, required=False)
    findings = serializers.ListField(child=serializers.CharField(max_length=FINDING_NAME_LENGTH), required=False)
    experts_per_item = serializers.IntegerField(min_value=EXPERTS_PER_ITEM_RANGE[0],
                                                max_value=EXPERTS_PER_ITEM_RANGE[1], required=False)
    allow_no_preference = serializers.BooleanField(required=False)
    washout_days = serializers.IntegerField(min_value=WASHOUT_DAYS_RANGE[0], max_value=WASHOUT_DAYS_RANGE[1],
                                            required=False)
    require_signoff = serializers.BooleanField(required=False)
    second_factor_for_all = serializers.BooleanField(required=False)
    ratio_assisted = serializers.IntegerField(min_value=RATIO_RANGE[0], max_value=RATIO_RANGE[1], required=False)
    ratio_standard = serializers.IntegerField(min_value=RATIO_RANGE[0], max_value=RATIO_RANGE[1], required=False)
    block_multiples = serializers.ListField(
        child=serializers.IntegerField(min_value=BLOCK_MULTIPLE_RANGE[0], max_value=BLOCK_MULTIPLE_RANGE[1]),
        required=False)
    fixed_block_reason = serializers.CharField(
        max_length=Trial._meta.get_field("fixed_block_reason").max_length, required=False, allow_blank=True)


class TrialUpdateSerializer(TrialCreateSerializer):
    code = None
    title = serializers.CharField(max_length=TITLE_LENGTH, required=False)


class TransitionSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=Status.choices)


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["code", "name", "created_at"]
        read_only_fields = ["created_at"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    site = serializers.CharField(source="site.code", read_only=True, allow_null=True)

    class Meta:
        model = Membership
        fields = ["pseudonym", "username", "role", "site", "created_at"]


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    site = serializers.SlugField(required=False, allow_null=True, help_text="Site code (readers).")


class InvitationSerializer(serializers.Serializer):
    """The answer when an invited person has no account yet: an e-mail with a link went out (202)."""

    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    site = serializers.CharField(source="site.code", allow_null=True, default=None)
    invited = serializers.SerializerMethodField()

    def get_invited(self, invitation) -> bool:
        return True


class CaseSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="site.code", read_only=True)

    class Meta:
        model = Case
        fields = [
            "code", "site", "clinical_history", "modality", "view_position", "rows", "columns", "bits_stored",
            "photometric", "transfer_syntax", "display_width", "display_height", "window_center",
            "window_width", "window_source", "enrolled_at",
        ]


class StagedImageSerializer(serializers.Serializer):
    """An uploaded image that waits for a frontal image of its study (a case is a study)."""

    staged = serializers.BooleanField()
    detail = serializers.CharField()


class CaseUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    site = serializers.SlugField(help_text="Site code.")
    clinical_history = serializers.CharField(required=False, allow_blank=True, max_length=CLINICAL_HISTORY_LIMIT)


class AllocationSerializer(serializers.ModelSerializer):
    unit = serializers.SerializerMethodField()

    class Meta:
        model = Allocation
        fields = ["stratum", "position", "unit_type", "unit", "arm", "allocated_at"]

    def get_unit(self, obj) -> str:
        return obj.membership.pseudonym if obj.membership_id else obj.case.code


class SignatureSerializer(serializers.Serializer):
    """An electronic signature given through the API: the caller's password and a code of their second factor."""

    password = serializers.CharField(trim_whitespace=False, write_only=True)
    code = serializers.CharField(max_length=32, required=False, allow_blank=True, default="", write_only=True)
