"""Forms of the scoring pages, built from the item's blinded view (scoring.selectors.item_view)."""
from __future__ import annotations

from django import forms

from trial.models import Role

from .models import COMMENT_LIMIT, Mark


def _radios(choices, *, required=True, label=""):
    return forms.ChoiceField(choices=choices, widget=forms.RadioSelect, required=required, label=label)


class CorrectionMixin(forms.Form):
    correction_reason = forms.CharField(required=False, max_length=COMMENT_LIMIT, label="Reason for the correction",
                                        widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, *args, correcting: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not correcting:
            del self.fields["correction_reason"]
        else:
            self.fields["correction_reason"].required = True

    def reason(self) -> str | None:
        return self.cleaned_data.get("correction_reason") if "correction_reason" in self.fields else None


class QualityForm(CorrectionMixin):
    def __init__(self, *args, scale: dict, **kwargs):
        super().__init__(*args, **kwargs)
        likert = [(str(s["value"]), f"{s['value']} · {s['label']}") for s in scale["likert"]]
        self.fields["overall"] = _radios(likert, label="Overall quality")
        for sub in scale["subscores"]:
            self.fields[f"sub_{sub['key']}"] = forms.ChoiceField(
                choices=[("", "—")] + [(str(s["value"]), str(s["value"])) for s in scale["likert"]], required=False,
                label=sub["label"], help_text=sub.get("help", ""))
        self.fields["radpeer"] = _radios([(r["value"], r["label"]) for r in scale["radpeer"]], label="RADPEER")
        self.fields["comment"] = forms.CharField(required=False, max_length=COMMENT_LIMIT, label="Comment",
                                                 widget=forms.Textarea(attrs={"rows": 2}))
        self.subscore_keys = [s["key"] for s in scale["subscores"]]
        self.order_fields(["overall", *[f"sub_{k}" for k in self.subscore_keys], "radpeer", "comment",
                           "correction_reason"])

    def values(self) -> dict:
        data = self.cleaned_data
        return {"overall": int(data["overall"]), "radpeer": data["radpeer"], "comment": data["comment"],
                "subscores": {k: int(data[f"sub_{k}"]) for k in self.subscore_keys if data.get(f"sub_{k}")}}


class PreferenceForm(CorrectionMixin):
    def __init__(self, *args, scale: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["choice"] = _radios([(c["value"], c["label"]) for c in scale["choices"]],
                                        label="Which report is better?")
        self.fields["reason"] = forms.CharField(required=False, max_length=COMMENT_LIMIT, label="Why (optional)",
                                                widget=forms.Textarea(attrs={"rows": 2}))
        if scale.get("ai_guess"):  # the trial's blinding question, asked after the preference so as not to colour it
            self.fields["ai_guess"] = _radios([(g["value"], g["label"]) for g in scale["ai_guess"]],
                                              label="Which report was written with AI assistance?")
            self.fields["ai_guess"].help_text = "Your best guess; “Can't tell” is a good answer."
        self.order_fields(["choice", "reason", "ai_guess", "correction_reason"])

    def values(self) -> dict:
        data = self.cleaned_data
        return {"choice": data["choice"], "reason_text": data["reason"], "ai_guess": data.get("ai_guess", "")}


class FindingsForm(CorrectionMixin):
    """One row per trial finding; field names are positions (finding names have spaces)."""

    def __init__(self, *args, findings: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.findings = list(findings)
        for i, name in enumerate(self.findings):
            self.fields[f"finding_{i}"] = _radios(Mark.choices, label=name.capitalize())
        self.order_fields([f"finding_{i}" for i in range(len(self.findings))] + ["correction_reason"])

    def marks(self) -> dict:
        return {name: self.cleaned_data[f"finding_{i}"] for i, name in enumerate(self.findings)}


class AdjudicationForm(forms.Form):
    def __init__(self, *args, findings: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.findings = [f["finding"] for f in findings]
        for i, f in enumerate(findings):
            self.fields[f"finding_{i}"] = forms.ChoiceField(
                choices=[("", "—"), ("present", "Present"), ("absent", "Absent")], required=False,
                label=f["finding"].capitalize() + ("" if f["pending"] else " (already decided by you)"))
        self.fields["reason"] = forms.CharField(required=False, max_length=COMMENT_LIMIT, label="Note (optional)",
                                                widget=forms.Textarea(attrs={"rows": 2}))

    def decisions(self) -> dict:
        return {name: self.cleaned_data[f"finding_{i}"] == "present" for i, name in enumerate(self.findings)
                if self.cleaned_data.get(f"finding_{i}")}


class SettingsForm(forms.Form):
    adjudicator = forms.ModelChoiceField(queryset=None, required=False, empty_label="(none)",
                                         help_text="An expert who settles findings on which the panel has no majority.")
    reference_standard = forms.BooleanField(required=False, label="Experts mark each finding on every case",
                                            help_text="The reference standard of the detection endpoints.")
    subscores = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                                help_text="One per line: key | label | help. Each is scored 1–5, optionally.")
    ask_which_assisted = forms.BooleanField(
        required=False, label="Ask experts which report of a pair was written with AI assistance",
        help_text="A or B or “can't tell”, after their preference; Bang's blinding index is computed from the answers.")
    canonical_text = forms.BooleanField(
        required=False, label="Show reports in the canonical presentation",
        help_text="One wording for stock phrases, negated lists one per line, findings in anatomical order: narrows "
                  "the style cue of an edited AI draft. Nothing is cut. The conduct page measures the difference.")
    aligned_pair = forms.BooleanField(
        required=False, label="Align the two reports of a pair",
        help_text="Findings beside findings and impression beside impression, in panes of equal height (the shorter "
                  "report is padded with empty space, never cut).")

    def __init__(self, *args, trial, current, **kwargs):
        super().__init__(*args, initial={
            "adjudicator": current.adjudicator_id, "reference_standard": current.reference_standard,
            "subscores": "\n".join(f"{s['key']} | {s['label']} | {s.get('help', '')}" for s in current.subscores),
            "ask_which_assisted": current.ask_which_assisted, "canonical_text": current.canonical_text,
            "aligned_pair": current.aligned_pair,
        }, **kwargs)
        self.fields["adjudicator"].queryset = trial.memberships.filter(role=Role.EXPERT).order_by("pseudonym")
        self.fields["adjudicator"].label_from_instance = lambda m: f"{m.pseudonym} ({m.user.get_username()})"

    def clean_subscores(self) -> list[dict]:
        out = []
        for line in self.cleaned_data["subscores"].splitlines():
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|")]
            out.append({"key": parts[0], "label": parts[1] if len(parts) > 1 else "",
                        "help": parts[2] if len(parts) > 2 else ""})
        return out
