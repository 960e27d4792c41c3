"""The analysis plan form: shapes input into a plan document; stats.plan validates it and services decide."""
from __future__ import annotations

from typing import Any

from django import forms

from .plan import (
    ADJUSTMENTS,
    COVARIATES,
    ENDPOINTS,
    ESTIMAND_ENDPOINTS,
    INTERCURRENT_EVENTS,
    POPULATIONS,
    POWER_DEFAULTS,
    RANDOM_TERMS,
    SCHEMA,
    STRATEGIES,
    SUBGROUP_ENDPOINTS,
    VARIABLES,
    default_estimands,
    label_of,
    upgrade,
)

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


# ------------------------------------------------------------------------------------------------- power

# (field, label, default, kind): counts are whole numbers; SDs are on each analysis scale
POWER_FIELDS = (
    ("n_cases", "Cases (each read once in each arm)", POWER_DEFAULTS["n_cases"], "int"),
    ("readers_per_arm", "Readers per arm", POWER_DEFAULTS["readers_per_arm"], "int"),
    ("n_experts", "Experts scoring each report", POWER_DEFAULTS["n_experts"], "int"),
    ("n_sites", "Sites", POWER_DEFAULTS["n_sites"], "int"),
    ("alpha", "α (two-sided)", POWER_DEFAULTS["alpha"], "alpha"),
    ("quality_effect", "Quality: difference to detect (points)", POWER_DEFAULTS["quality"]["effect"], "float"),
    ("quality_reader_sd", "Quality: reader SD (points)", POWER_DEFAULTS["quality"]["reader_sd"], "sd"),
    ("quality_report_sd", "Quality: report SD, case × arm (points)", POWER_DEFAULTS["quality"]["report_sd"], "sd"),
    ("quality_residual_sd", "Quality: residual SD, one expert's score (points)",
     POWER_DEFAULTS["quality"]["residual_sd"], "sd"),
    ("time_ratio", "Reading time: ratio of geometric means to detect", POWER_DEFAULTS["time"]["time_ratio"], "ratio"),
    ("time_reader_sd", "Reading time: reader SD (log scale)", POWER_DEFAULTS["time"]["reader_sd"], "sd"),
    ("time_report_sd", "Reading time: report SD, case × arm (log scale)", POWER_DEFAULTS["time"]["report_sd"], "sd"),
    ("time_residual_sd", "Reading time: residual SD (log scale)", POWER_DEFAULTS["time"]["residual_sd"], "sd"),
    ("vote_sd", "Preference: SD of an expert's vote noise (points)", POWER_DEFAULTS["preference"]["vote_sd"], "sd"),
    ("tie_band", "Preference: no preference within ± (points)", POWER_DEFAULTS["preference"]["tie_band"], "sd"),
)
_POWER_SECTIONS = {"quality": ("effect", "reader_sd", "report_sd", "residual_sd"),
                   "time": ("time_ratio", "reader_sd", "report_sd", "residual_sd"),
                   "preference": ("vote_sd", "tie_band")}


def _power_field(kind: str, label: str, default, *, required: bool) -> forms.Field:
    if kind == "int":
        return forms.IntegerField(min_value=1 if label.startswith(("Experts", "Sites")) else 2, max_value=1_000_000,
                                  label=label, initial=default, required=required)
    if kind == "alpha":
        return forms.FloatField(min_value=0.0001, max_value=0.4999, label=label, initial=default, required=required)
    if kind == "ratio":
        return forms.FloatField(min_value=0.0001, max_value=100, label=label, initial=default, required=required)
    if kind == "sd":
        return forms.FloatField(min_value=0, max_value=100, label=label, initial=default, required=required)
    return forms.FloatField(min_value=-100, max_value=100, label=label, initial=default, required=required)


def power_inputs(data: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The plan's power section (stats.plan) from cleaned power fields."""
    out: dict[str, Any] = {k: data[k] for k in ("n_cases", "readers_per_arm", "n_experts", "n_sites", "alpha")}
    for section, keys in _POWER_SECTIONS.items():
        out[section] = {key: data[key if key in ("time_ratio", "vote_sd", "tie_band") else f"{section}_{key}"]
                        for key in keys}
    out["source"] = source
    return out


def power_initial(power: dict[str, Any] | None) -> dict[str, Any]:
    """Form initial values from a plan's power section (or the defaults)."""
    p = power or POWER_DEFAULTS
    out = {k: p[k] for k in ("n_cases", "readers_per_arm", "n_experts", "n_sites", "alpha")}
    for section, keys in _POWER_SECTIONS.items():
        for key in keys:
            name = key if key in ("time_ratio", "vote_sd", "tie_band") else f"{section}_{key}"
            out[name] = p[section][key]
    return out


class PowerForm(forms.Form):
    """The sample-size inputs, on their own (the power page) or inside the plan form (prefixed power_)."""

    source = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)

    def inputs(self) -> dict[str, Any]:
        return power_inputs(self.cleaned_data, source=self.cleaned_data.get("source") or "typed in")


for _name, _label, _default, _kind in POWER_FIELDS:
    PowerForm.base_fields[_name] = _power_field(_kind, _label, _default, required=True)


# ----------------------------------------------------------------------------------------------- estimands

_STRATEGY_LABELS = {k: v.split(":")[0] for k, v in STRATEGIES.items()}
_ENDPOINT_WORDS = {"quality": "Quality", "radpeer": "RADPEER", "reading_time": "Reading time",
                   "preference": "Preference"}


def _estimand_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for endpoint in ESTIMAND_ENDPOINTS:
        word = _ENDPOINT_WORDS[endpoint]
        fields[f"estimand_{endpoint}_population"] = forms.ChoiceField(
            choices=list(POPULATIONS.items()), label=f"{word}: population", initial="all_randomized", required=False)
        if len(VARIABLES[endpoint]) > 1:
            fields[f"estimand_{endpoint}_variable"] = forms.ChoiceField(
                choices=list(VARIABLES[endpoint].items()), label=f"{word}: variable",
                initial=next(iter(VARIABLES[endpoint])), required=False)
        for event, spec in INTERCURRENT_EVENTS.items():
            if len(spec["strategies"]) > 1:
                fields[f"estimand_{endpoint}_{event}"] = forms.ChoiceField(
                    choices=[(st, _STRATEGY_LABELS[st]) for st in spec["strategies"]],
                    label=f"{word}: {spec['short']}", help_text=spec["label"], initial=spec["strategies"][0],
                    required=False)
    return fields


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
    tipping_point = forms.BooleanField(required=False, initial=True,
                                       label="δ-adjusted tipping point of the primary for its missing outcomes")
    power_enabled = forms.BooleanField(required=False, initial=False,
                                       label="State the sample-size calculation in the plan (computed when frozen)")
    power_source = forms.CharField(required=False, max_length=500, initial="typed in",
                                   label="Where the variance components come from (e.g. a pilot, run 2's fit)")
    interim = forms.JSONField(
        required=False, label="Interim looks (JSON; empty: none)", widget=forms.Textarea(attrs={"rows": 3}),
        help_text='e.g. {"blinded_ssr": {"fraction": 0.5}, "safety": {"fractions": [0.25, 0.5, 0.75]}, '
                  '"efficacy": {"fractions": [0.5], "spending": "obrien_fleming"}}; planned_cases defaults to the '
                  "power section's cases (docs/statistics.md, interim looks).")
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
            "tipping_point": content.get("tipping_point", True),
            "interim": content.get("interim"),
            "power_enabled": bool(content.get("power")),
            "power_source": (content.get("power") or {}).get("source", "typed in"),
            **{f"power_{k}": v for k, v in power_initial(content.get("power")).items()},
            **cls._estimand_initial(content.get("estimands") or default_estimands()),
        }

    @staticmethod
    def _estimand_initial(estimands: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for endpoint, spec in estimands.items():
            out[f"estimand_{endpoint}_population"] = spec["population"]
            out[f"estimand_{endpoint}_variable"] = spec["variable"]
            for event, strategy in spec["intercurrent_events"].items():
                out[f"estimand_{endpoint}_{event}"] = strategy
        return out

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
        interim = {"interim": d["interim"]} if d.get("interim") else {}    # no section: the key is left out
        return {
            **interim,
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
            "estimands": {endpoint: {
                "population": d.get(f"estimand_{endpoint}_population") or "all_randomized",
                "variable": d.get(f"estimand_{endpoint}_variable") or next(iter(VARIABLES[endpoint])),
                "intercurrent_events": {event: d.get(f"estimand_{endpoint}_{event}") or spec["strategies"][0]
                                        for event, spec in INTERCURRENT_EVENTS.items()}}
                for endpoint in ESTIMAND_ENDPOINTS},
            "tipping_point": bool(d.get("tipping_point")),
            "power": (power_inputs({k[len("power_"):]: v for k, v in d.items() if k.startswith("power_")},
                                   source=d.get("power_source") or "typed in")
                      if d.get("power_enabled") else None),
        }

    def clean(self):
        data = super().clean()
        if data.get("power_enabled"):
            for name, label, _, _ in POWER_FIELDS:
                if data.get(f"power_{name}") is None:
                    self.add_error(f"power_{name}", f"{label}: needed for the sample-size calculation.")
        return data


PlanForm.base_fields.update(_estimand_fields())
for _name, _label, _default, _kind in POWER_FIELDS:
    PlanForm.base_fields[f"power_{_name}"] = _power_field(_kind, "Power: " + _label[0].lower() + _label[1:],
                                                          _default, required=False)
PlanForm.base_fields["notes"] = PlanForm.base_fields.pop("notes")     # last, after the added sections
