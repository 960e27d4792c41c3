"""Investigator forms (crispy, Bootstrap 5). Forms only shape input; services decide."""
from __future__ import annotations

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.validators import MaxValueValidator

from .dicom import EligibilityRules
from .findings import DEFAULT_FINDINGS
from .models import (
    EXPERTS_PER_ITEM_RANGE,
    RATIO_RANGE,
    REGISTRATION_ID_LENGTH,
    SITE_CODE_LENGTH,
    TITLE_LENGTH,
    TRIAL_CODE_LENGTH,
    WASHOUT_DAYS_RANGE,
    Design,
    DraftRule,
    Mode,
    ReleasePolicy,
    Role,
    Site,
    Trial,
)


class _CrispyForm(forms.Form):
    submit_label = "Save"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", self.submit_label))


def _findings_initial(findings: list[str]) -> str:
    return "\n".join(findings)


class FindingsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 6})

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


class TrialForm(_CrispyForm):
    submit_label = "Create trial"
    code = forms.SlugField(max_length=TRIAL_CODE_LENGTH, help_text="Short, used in URLs: letters, digits, hyphens.")
    title = forms.CharField(max_length=TITLE_LENGTH)
    registration_id = forms.CharField(max_length=REGISTRATION_ID_LENGTH, required=False, label="Registration id",
                                      help_text="e.g. NCT07117266")
    # Not required: a form sent without it (an older client) makes a reader study, as before the modes existed.
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.PROSPECTIVE, required=False)
    design = forms.ChoiceField(choices=Design.choices, initial=Design.PAIRED_PARALLEL)
    findings = FindingsField(help_text="One finding per line.", initial=_findings_initial(DEFAULT_FINDINGS))
    experts_per_item = forms.IntegerField(min_value=EXPERTS_PER_ITEM_RANGE[0], max_value=EXPERTS_PER_ITEM_RANGE[1],
                                          initial=5, help_text="Odd: 3, 5, 7 …")
    allow_no_preference = forms.BooleanField(required=False, initial=True)
    require_signoff = forms.BooleanField(required=False, initial=False, label="Require senior sign-off")
    second_factor_for_all = forms.BooleanField(
        required=False, initial=False, label=Trial._meta.get_field("second_factor_for_all").verbose_name,
        help_text=Trial._meta.get_field("second_factor_for_all").help_text)
    washout_days = forms.IntegerField(min_value=WASHOUT_DAYS_RANGE[0], max_value=WASHOUT_DAYS_RANGE[1], initial=28,
                                      help_text="Crossover only.")
    ratio_assisted = forms.IntegerField(min_value=RATIO_RANGE[0], max_value=RATIO_RANGE[1], initial=1)
    ratio_standard = forms.IntegerField(min_value=RATIO_RANGE[0], max_value=RATIO_RANGE[1], initial=1)
    block_multiples = forms.CharField(initial="1, 2, 3", help_text="Block sizes as multiples of the ratio sum.")
    fixed_block_reason = forms.CharField(
        required=False, max_length=Trial._meta.get_field("fixed_block_reason").max_length,
        label=Trial._meta.get_field("fixed_block_reason").verbose_name,
        help_text=Trial._meta.get_field("fixed_block_reason").help_text)

    # A prospective trial's conduct (trial.lifecycle): eligibility at arrival, drafts, windows, targets, release.
    screen = forms.BooleanField(required=False, initial=True, label="Check eligibility rules at arrival",
                                help_text="Every arriving image is screened against the rules below and logged.")
    elig_modalities = forms.CharField(initial="CR, DX", required=False, label="Accepted modalities")
    elig_body_parts = forms.CharField(initial="CHEST", required=False, label="Accepted body parts")
    elig_view_positions = forms.CharField(initial="AP, PA", required=False, label="Accepted view positions")
    elig_min_age_years = forms.IntegerField(min_value=0, initial=18, required=False, label="Minimum age (years)")
    elig_max_age_years = forms.IntegerField(min_value=0, required=False, label="Maximum age (years)")
    elig_accept_unknown_age = forms.BooleanField(required=False, initial=False, label="Accept an unknown age")
    elig_repeat_window_days = forms.IntegerField(
        min_value=0, required=False, label="Not the same patient within (days)",
        help_text="Compared through a keyed hash of the patient ID, never the ID itself. Empty: no such rule.")
    flag_urgency = forms.BooleanField(required=False, initial=True, label="Urgent cases first on worklists")
    draft_rule = forms.ChoiceField(choices=DraftRule.choices, initial=DraftRule.WAIT, required=False)
    draft_limit_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=30, required=False,
                                             help_text=Trial._meta.get_field("draft_limit_minutes").help_text)
    read_window_hours = forms.IntegerField(min_value=1, max_value=24 * 60, required=False,
                                           help_text=Trial._meta.get_field("read_window_hours").help_text)
    release_policy = forms.ChoiceField(choices=ReleasePolicy.choices, initial=ReleasePolicy.RESEARCH_ONLY,
                                       required=False)
    settle_seconds = forms.IntegerField(
        min_value=0, max_value=3600, initial=60, required=False, label="Study settle window (seconds)",
        help_text="A case is a study: an image that arrives before any frontal image of its study waits this long "
                  "(after the study's last image) for one; 0: judged alone at once.")
    target_cases = forms.IntegerField(min_value=1, required=False,
                                      help_text=Trial._meta.get_field("target_cases").help_text)
    close_at_target = forms.BooleanField(required=False, initial=False,
                                         help_text=Trial._meta.get_field("close_at_target").help_text)

    RULE_FIELDS = ("modalities", "body_parts", "view_positions", "min_age_years", "max_age_years",
                   "accept_unknown_age", "repeat_window_days")

    def clean(self):
        data = super().clean()
        rules = {name: data.pop(f"elig_{name}", None) for name in self.RULE_FIELDS}
        screen = data.pop("screen", False)
        if screen:
            for name in ("modalities", "body_parts", "view_positions"):
                rules[name] = [v for v in (rules[name] or "").replace(",", " ").split() if v]
            rules["accept_unknown_age"] = bool(rules["accept_unknown_age"])
            try:
                data["eligibility"] = EligibilityRules.from_dict(rules).to_dict()
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        else:
            data["eligibility"] = None
        # left out of the form: the model's defaults
        for name in ("mode", "draft_rule", "draft_limit_minutes", "release_policy", "settle_seconds"):
            if data.get(name) in (None, ""):
                data[name] = Trial._meta.get_field(name).get_default()
        return data

    def clean_block_multiples(self):
        try:
            return [int(x) for x in self.cleaned_data["block_multiples"].replace(" ", "").split(",") if x]
        except ValueError as exc:
            raise forms.ValidationError("Give whole numbers separated by commas, e.g. 1, 2, 3.") from exc


class TrialSettingsForm(TrialForm):
    submit_label = "Save settings"

    def __init__(self, *args, trial: Trial, **kwargs):
        kwargs.setdefault("initial", {
            "code": trial.code, "title": trial.title, "registration_id": trial.registration_id,
            "design": trial.design, "findings": _findings_initial(trial.findings),
            "experts_per_item": trial.experts_per_item, "allow_no_preference": trial.allow_no_preference,
            "require_signoff": trial.require_signoff, "second_factor_for_all": trial.second_factor_for_all,
            "washout_days": trial.washout_days,
            "ratio_assisted": trial.ratio_assisted, "ratio_standard": trial.ratio_standard,
            "block_multiples": ", ".join(str(m) for m in trial.block_multiples),
            "fixed_block_reason": trial.fixed_block_reason, "mode": trial.mode,
            "screen": trial.eligibility is not None, "flag_urgency": trial.flag_urgency,
            "draft_rule": trial.draft_rule, "draft_limit_minutes": trial.draft_limit_minutes,
            "read_window_hours": trial.read_window_hours, "release_policy": trial.release_policy,
            "settle_seconds": trial.settle_seconds, "target_cases": trial.target_cases,
            "close_at_target": trial.close_at_target,
            **{f"elig_{k}": (", ".join(v) if isinstance(v, list) else v)
               for k, v in (trial.eligibility or {}).items()},
        })
        super().__init__(*args, **kwargs)
        self.fields["code"].disabled = True
        if trial.status != "setup":
            for name in ("mode", "design", "ratio_assisted", "ratio_standard", "block_multiples",
                         "fixed_block_reason", "experts_per_item", "screen", "flag_urgency", "draft_rule",
                         "draft_limit_minutes", "read_window_hours", "release_policy", "settle_seconds",
                         *(f"elig_{n}" for n in self.RULE_FIELDS)):
                self.fields[name].disabled = True
                self.fields[name].help_text = "Frozen once enrolment has started."

    def clean(self):
        data = super().clean()
        if self.fields["screen"].disabled:
            data.pop("eligibility", None)  # frozen: not a change
        return data


class SiteForm(_CrispyForm):
    submit_label = "Add site"
    code = forms.SlugField(max_length=SITE_CODE_LENGTH)
    name = forms.CharField(max_length=TITLE_LENGTH)


class InviteForm(_CrispyForm):
    submit_label = "Invite"
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices)
    site = forms.ModelChoiceField(queryset=Site.objects.none(), required=False,
                                  help_text="Readers belong to a site.")

    def __init__(self, *args, trial: Trial, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = trial.sites.all()


class SignupForm(_CrispyForm):
    """Creates the account of an invited person; the invitation names the trial and role."""

    submit_label = "Create account and join"
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput)

    def clean_username(self):
        name = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=name).exists():
            raise forms.ValidationError("This username is taken.")
        return name

    def clean(self):
        data = super().clean()
        if data.get("password"):
            validate_password(data["password"], get_user_model()(username=data.get("username", "")))
        return data


class SecondFactorForm(_CrispyForm):
    """A code of the authenticator app, or a recovery code."""

    submit_label = "Verify"
    code = forms.CharField(max_length=32, label="Code", widget=forms.TextInput(attrs={
        "autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
        help_text="The 6 digits your authenticator app shows now, or one of your recovery codes.")


class ApiTokenForm(_CrispyForm):
    """A new API token of the asking user, for one of their trials."""

    submit_label = "Create token"
    trial = forms.ModelChoiceField(queryset=Trial.objects.none(), to_field_name="code", empty_label=None)
    name = forms.CharField(max_length=60, required=False, help_text="What it is for, e.g. “PACS bridge”.")
    days = forms.IntegerField(min_value=1, label="Valid for (days)")

    def __init__(self, *args, trials, max_days: int, default_days: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trial"].queryset = trials
        self.fields["days"].max_value = max_days
        self.fields["days"].initial = default_days
        self.fields["days"].validators.append(MaxValueValidator(max_days))
        self.fields["days"].widget.attrs["max"] = max_days


class SignatureForm(_CrispyForm):
    """An electronic signature: the signer's password and a code of their second factor, given at the act
    (trial.signatures). The meaning is stated on the page above the form."""

    submit_label = "Sign"
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
                               label="Your password")
    code = forms.CharField(max_length=32, required=False, label="Code from your authenticator", widget=forms.TextInput(
        attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
        help_text="The 6 digits your authenticator app shows now, or one of your recovery codes.")

    def __init__(self, *args, submit_label: str = "Sign", **kwargs):
        self.submit_label = submit_label
        super().__init__(*args, **kwargs)
