"""The analysis plan form: shapes input into a plan document; stats.plan validates it and services decide."""
from __future__ import annotations

from typing import Any

from django import forms

from .plan import ADJUSTMENTS, ENDPOINTS, RANDOM_TERMS, SUBGROUP_ENDPOINTS, TEST_LABELS

ANALYSIS_CHOICES = [(f"{e}.{t}", f"{spec['label']}: {TEST_LABELS[t]}") for e, spec in ENDPOINTS.items()
                    for t in spec["tests"]]
ADJUSTMENT_LABELS = {"holm": "Holm (family-wise error)", "bh": "Benjamini–Hochberg (false discovery rate)",
                     "none": "none"}
TERM_CHOICES = [(t, t) for t in RANDOM_TERMS]


def _entry(value: str) -> dict[str, str]:
    endpoint, test = value.split(".", 1)
    return {"endpoint": endpoint, "test": test}


def _key(entry: dict[str, str]) -> str:
    return f"{entry['endpoint']}.{entry['test']}"


class PlanForm(forms.Form):
    primary = forms.ChoiceField(choices=ANALYSIS_CHOICES, label="Primary endpoint and test")
    secondary = forms.MultipleChoiceField(choices=ANALYSIS_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                          label="Key secondary endpoints")
    secondary_adjustment = forms.ChoiceField(choices=[(a, ADJUSTMENT_LABELS[a]) for a in ADJUSTMENTS],
                                             label="Multiplicity, key secondary family")
    exploratory = forms.MultipleChoiceField(choices=ANALYSIS_CHOICES, required=False,
                                            widget=forms.CheckboxSelectMultiple, label="Exploratory endpoints")
    exploratory_adjustment = forms.ChoiceField(choices=[(a, ADJUSTMENT_LABELS[a]) for a in ADJUSTMENTS],
                                               label="Multiplicity, exploratory family (with subgroups)")
    sensitivity = forms.MultipleChoiceField(choices=ANALYSIS_CHOICES, required=False,
                                            widget=forms.CheckboxSelectMultiple, label="Sensitivity analyses")
    alpha = forms.FloatField(min_value=0.0001, max_value=0.4999, initial=0.05)
    confidence_level = forms.FloatField(min_value=0.5001, max_value=0.9999, initial=0.95, label="Confidence level")
    random_quality = forms.MultipleChoiceField(choices=TERM_CHOICES, widget=forms.CheckboxSelectMultiple,
                                               label="Random intercepts, quality model")
    random_radpeer = forms.MultipleChoiceField(choices=TERM_CHOICES, widget=forms.CheckboxSelectMultiple,
                                               label="Random intercepts, RADPEER model")
    random_time = forms.MultipleChoiceField(choices=[c for c in TERM_CHOICES if c[0] != "expert"],
                                            widget=forms.CheckboxSelectMultiple,
                                            label="Random intercepts, reading-time model")
    subgroup_reference_min = forms.IntegerField(min_value=1, max_value=50, required=False,
                                                label="Subgroup: at least N findings by the reference standard",
                                                help_text="Empty: no such subgroup.")
    subgroup_ai_min = forms.IntegerField(min_value=1, max_value=50, required=False,
                                         label="Subgroup: at least N findings by the AI", help_text="Empty: none.")
    ai_threshold = forms.FloatField(min_value=0.0001, max_value=0.9999, initial=0.5,
                                    label="AI score counted as a finding at or above")
    subgroup_endpoints = forms.MultipleChoiceField(
        choices=[(e, ENDPOINTS[e]["label"]) for e in SUBGROUP_ENDPOINTS], required=False,
        widget=forms.CheckboxSelectMultiple, label="Endpoints analysed in each subgroup")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000)

    @classmethod
    def initial_from(cls, content: dict[str, Any]) -> dict[str, Any]:
        subs = {s["by"]: s for s in content.get("subgroups", [])}
        endpoints = next(iter(subs.values()), {}).get("endpoints", ["reading_time", "quality"])
        random = content.get("random_effects", {})
        return {
            "primary": _key(content["primary"]),
            "secondary": [_key(e) for e in content.get("secondary", [])],
            "exploratory": [_key(e) for e in content.get("exploratory", [])],
            "sensitivity": [_key(e) for e in content.get("sensitivity", [])],
            "secondary_adjustment": content.get("secondary_adjustment", "holm"),
            "exploratory_adjustment": content.get("exploratory_adjustment", "bh"),
            "alpha": content.get("alpha", 0.05), "confidence_level": content.get("confidence_level", 0.95),
            "random_quality": random.get("quality", ["case", "reader", "expert"]),
            "random_radpeer": random.get("radpeer", ["case", "reader", "expert"]),
            "random_time": random.get("reading_time", ["case", "reader"]),
            "subgroup_reference_min": subs.get("reference", {}).get("min_findings"),
            "subgroup_ai_min": subs.get("ai", {}).get("min_findings"),
            "ai_threshold": content.get("ai_threshold", 0.5),
            "subgroup_endpoints": endpoints, "notes": content.get("notes", ""),
        }

    def content(self) -> dict[str, Any]:
        """The plan document of the submitted form (call after is_valid)."""
        d = self.cleaned_data
        endpoints = d["subgroup_endpoints"] or ["reading_time", "quality"]
        subgroups = []
        if d.get("subgroup_reference_min"):
            subgroups.append({"name": "complex_reference", "by": "reference", "min_findings": d["subgroup_reference_min"],
                              "endpoints": endpoints})
        if d.get("subgroup_ai_min"):
            subgroups.append({"name": "complex_ai", "by": "ai", "min_findings": d["subgroup_ai_min"],
                              "ai_threshold": d["ai_threshold"], "endpoints": endpoints})
        return {
            "schema": 1, "alpha": d["alpha"], "confidence_level": d["confidence_level"],
            "primary": _entry(d["primary"]),
            "secondary": [_entry(v) for v in d["secondary"]],
            "secondary_adjustment": d["secondary_adjustment"],
            "exploratory": [_entry(v) for v in d["exploratory"]],
            "exploratory_adjustment": d["exploratory_adjustment"],
            "sensitivity": [_entry(v) for v in d["sensitivity"]],
            "subgroups": subgroups,
            "random_effects": {"quality": d["random_quality"], "radpeer": d["random_radpeer"],
                               "reading_time": d["random_time"]},
            "ai_threshold": d["ai_threshold"], "notes": d["notes"],
        }
