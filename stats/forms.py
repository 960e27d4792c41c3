"""The analysis plan form: shapes input into a plan document; stats.plan validates it and services decide."""
from __future__ import annotations

from typing import Any

from django import forms

from .plan import ADJUSTMENTS, COVARIATES, ENDPOINTS, RANDOM_TERMS, SCHEMA, SUBGROUP_ENDPOINTS, label_of, upgrade

ANALYSIS_CHOICES = [(f"{e}.{t}", f"{spec['label']}: {label_of(e, t)}") for e, spec in ENDPOINTS.items()
                    for t in spec["tests"]]
ADJUSTMENT_LABELS = {"holm": "Holm (family-wise error)", "bh": "Benjamini–Hochberg (false discovery rate)",
                     "none": "none"}
TERM_CHOICES = [(t, t) for t in RANDOM_TERMS]
COVARIATE_LABELS = {"site": "site (the randomization stratum)", "period": "period (crossover)"}
COVARIATE_CHOICES = [(c, COVARIATE_LABELS.get(c, c)) for c in COVARIATES]


def _covariates(label: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(choices=COVARIATE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                     label=label, help_text="Reader experience is not offered: the dataset has no "
                                                            "such column yet.")


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
    gatekeeping = forms.BooleanField(required=False, initial=True,
                                     label="Test the key secondary family only if the primary is rejected")
    subgroup_adjustment = forms.ChoiceField(choices=[(a, ADJUSTMENT_LABELS[a]) for a in ADJUSTMENTS], required=False,
                                            initial="bh", label="Multiplicity, subgroup interaction tests")
    preference_min_votes = forms.IntegerField(min_value=1, max_value=50, required=False, initial=3,
                                              label="Votes a case needs for a majority (fewer: no majority)")
    alpha = forms.FloatField(min_value=0.0001, max_value=0.4999, initial=0.05)
    confidence_level = forms.FloatField(min_value=0.5001, max_value=0.9999, initial=0.95, label="Confidence level")
    random_quality = forms.MultipleChoiceField(choices=TERM_CHOICES, widget=forms.CheckboxSelectMultiple,
                                               label="Random intercepts, quality model")
    random_radpeer = forms.MultipleChoiceField(choices=TERM_CHOICES, widget=forms.CheckboxSelectMultiple,
                                               label="Random intercepts, RADPEER model")
    random_time = forms.MultipleChoiceField(choices=[c for c in TERM_CHOICES if c[0] != "expert"],
                                            widget=forms.CheckboxSelectMultiple,
                                            label="Random intercepts, reading-time model")
    random_detection = forms.MultipleChoiceField(choices=[c for c in TERM_CHOICES if c[0] != "expert"],
                                                 widget=forms.CheckboxSelectMultiple, required=False,
                                                 label="Random intercepts, detection model (empty: case and reader)")
    covariates_quality = _covariates("Fixed covariates, quality model")
    covariates_radpeer = _covariates("Fixed covariates, RADPEER model")
    covariates_time = _covariates("Fixed covariates, reading-time model")
    covariates_detection = _covariates("Fixed covariates, detection model")
    subgroup_site = forms.BooleanField(required=False, label="Subgroups by site (each site a level)")
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
        content = upgrade(content)     # a schema-1 plan as it was meant (stats.plan.upgrade)
        subs = {s["by"]: s for s in content.get("subgroups", [])}
        endpoints = next(iter(subs.values()), {}).get("endpoints", ["reading_time", "quality"])
        random = content.get("random_effects", {})
        covariates = content.get("covariates", {})
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
            "random_detection": random.get("detection", []),
            "covariates_quality": covariates.get("quality", []), "covariates_radpeer": covariates.get("radpeer", []),
            "covariates_time": covariates.get("reading_time", []),
            "covariates_detection": covariates.get("detection", []),
            "gatekeeping": content.get("gatekeeping", True),
            "subgroup_adjustment": content.get("subgroup_adjustment", "bh"),
            "preference_min_votes": content.get("preference_min_votes", 3),
            "subgroup_site": "site" in subs,
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
        if d.get("subgroup_site"):
            subgroups.append({"name": "site", "by": "site", "endpoints": endpoints})
        if d.get("subgroup_reference_min"):
            subgroups.append({"name": "complex_reference", "by": "reference",
                              "min_findings": d["subgroup_reference_min"], "endpoints": endpoints})
        if d.get("subgroup_ai_min"):
            subgroups.append({"name": "complex_ai", "by": "ai", "min_findings": d["subgroup_ai_min"],
                              "ai_threshold": d["ai_threshold"], "endpoints": endpoints})
        random = {"quality": d["random_quality"], "radpeer": d["random_radpeer"], "reading_time": d["random_time"]}
        if d.get("random_detection"):
            random["detection"] = d["random_detection"]
        return {
            "schema": SCHEMA, "alpha": d["alpha"], "confidence_level": d["confidence_level"],
            "primary": _entry(d["primary"]),
            "secondary": [_entry(v) for v in d["secondary"]],
            "secondary_adjustment": d["secondary_adjustment"],
            "exploratory": [_entry(v) for v in d["exploratory"]],
            "exploratory_adjustment": d["exploratory_adjustment"],
            "sensitivity": [_entry(v) for v in d["sensitivity"]],
            "subgroups": subgroups,
            "subgroup_adjustment": d.get("subgroup_adjustment") or "bh",
            "gatekeeping": bool(d.get("gatekeeping")),
            "random_effects": random,
            "covariates": {"quality": d.get("covariates_quality", []), "radpeer": d.get("covariates_radpeer", []),
                           "reading_time": d.get("covariates_time", []),
                           "detection": d.get("covariates_detection", [])},
            "preference_min_votes": d.get("preference_min_votes") or 3,
            "ai_threshold": d["ai_threshold"], "notes": d["notes"],
        }
