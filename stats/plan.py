"""The analysis plan as data (no Django): its schema, a default per trial design, validation and its canonical hash.

A plan names the primary endpoint, the key secondary family (Holm, tested only once the primary is
rejected), the exploratory family (Benjamini–Hochberg), sensitivity analyses, subgroups (their
interaction tests in a family of their own), and for each mixed model its random effects and fixed
covariates, each endpoint with the test that answers it. Its canonical JSON (sorted keys, no
whitespace, UTF-8) is what is hashed at freezing, so anyone can recompute the hash from the plan
file the platform hands out.

Schema 2 added `covariates`, `gatekeeping`, `subgroup_adjustment`, `preference_min_votes`, the
site subgroup and the reader-aware tests (the defaults: LMM for quality and RADPEER, the preference
GLMM, the detection GLMM; the ordinal GLMM and wall-time LMM as sensitivities). Schema 3 (this one)
added `estimands` (ICH E9(R1): per endpoint a population, a variable, the strategy for each
intercurrent event and the summary measure; stats.estimands applies them), `tipping_point` (the
δ-adjusted sensitivity of the primary to its missing outcomes) and `power` (the sample-size
inputs; their result, computed by stats.methods.power, is stored in the plan when it is frozen).

An optional `interim` section (no schema change: a plan without it plans no interim look, and reads, hashes and
re-runs as before) plans the interim looks: a blinded sample-size re-estimation, safety looks and efficacy looks
with Lan–DeMets spending, at information fractions of the planned cases (stats.interim computes them).

An older plan stays readable and is never rewritten: its stored content, and so its hash, do not
change. `read_plan` gives the current reading of any stored plan, in memory, by `upgrade`: every
analysis it names stays as planned (a schema-1 "paired" primary is still the primary), and each new
setting takes the value that reproduces the old behaviour (schema 1 → 2: no covariates, no
gatekeeping, subgroups adjusted like the exploratory family, a case majority from any number of
votes; schema 2 → 3: no estimands (every row analysed as recorded), no tipping point, no power
section). Only the labels change: analyses that treat the readers as fixed say so.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

SCHEMA = 3
READABLE_SCHEMAS = (1, 2, 3)

# endpoint → label and the tests it allows; the first test is the default.
ENDPOINTS: dict[str, dict[str, Any]] = {
    "quality": {"label": "Report quality (Likert 1–5)", "tests": ("lmm", "ordinal_glmm", "paired", "clmm")},
    "radpeer": {"label": "RADPEER-based agreement score", "tests": ("lmm", "ordinal_glmm", "paired", "clmm")},
    "reading_time": {"label": "Reading time (active seconds)", "tests": ("lmm", "wall_lmm", "paired")},
    "preference": {"label": "Expert preference between the two reports of a case", "tests": ("glmm", "binomial")},
    "detection": {"label": "Detection of findings by arm", "tests": ("glmm", "mcnemar", "mrmc")},
    "ai_auc": {"label": "AI finding scores against the reference standard", "tests": ("delong",)},
}
# Analyses that treat the readers as fixed (or ignore them): with readers randomized they are not a
# test of the arm effect, and every label of them says so.
FIXED_READERS = frozenset({"paired", "clmm", "binomial", "mcnemar"})
FIXED_READERS_NOTE = "fixed readers — not a test of the AI effect"
TEST_LABELS = {
    "lmm": "linear mixed model (REML) with random readers and cases, Satterthwaite df",
    "ordinal_glmm": "cumulative-logit mixed model with crossed random intercepts (case, report, reader, expert), "
                    "small-sample corrected t",
    "wall_lmm": "linear mixed model on log wall time (opening to submission), random readers and cases",
    "paired": f"paired case-level difference (t interval) with Wilcoxon signed-rank ({FIXED_READERS_NOTE})",
    "clmm": f"cumulative-logit mixed model, random case intercept only ({FIXED_READERS_NOTE})",
    "glmm": "logistic mixed model with random readers and cases, small-sample corrected t",
    "binomial": f"exact binomial test of case majorities ({FIXED_READERS_NOTE})",
    "mcnemar": f"sensitivity/specificity with Wilson intervals, McNemar on paired reads ({FIXED_READERS_NOTE})",
    "mrmc": "Obuchowski–Rockette / Hillis MRMC, random readers and cases (crossover designs)",
    "delong": "AUC with DeLong interval; sensitivity and specificity at the AI threshold",
}
# Where one test name means different models for different endpoints.
ANALYSIS_LABELS = {
    ("reading_time", "lmm"): "linear mixed model on log active seconds (REML), random readers and cases, "
                             "Satterthwaite df; the difference in seconds from the same model on seconds",
    ("preference", "glmm"): "logistic mixed model on the experts' votes, random case, expert and both readers: "
                            "P(an expert prefers the X report), small-sample corrected t",
    ("detection", "glmm"): "logistic mixed model of a correct call, random reader and case, per finding and pooled "
                           "(finding effect), small-sample corrected t",
}
# Grouping terms a mixed model may take a random intercept for. "case:arm" is the report in the
# paired-parallel design (one report per case and arm); "case:arm:reader" is the report in a crossover.
RANDOM_TERMS = ("case", "reader", "expert", "reader:arm", "case:arm", "case:arm:reader", "site")
RANDOM_ENDPOINTS = ("quality", "radpeer", "reading_time", "detection")
# Fixed covariates a model may take. Reader experience is not offered: the dataset has no such column.
COVARIATES = ("site", "period")
SUBGROUP_BY = {
    "reference": "cases with at least N positive findings by the reference standard, against the other cases "
                 "with a reference standard",
    "ai": "cases with at least N findings scored at or above the AI threshold, against the other cases with AI scores",
    "site": "each site (the randomization stratum)",
}
ADJUSTMENTS = ("holm", "bh", "none")
SUBGROUP_ENDPOINTS = ("quality", "radpeer", "reading_time", "preference")

# ---- estimands (ICH E9(R1)); stats.estimands flags the events in the data and applies the strategies
ESTIMAND_ENDPOINTS = ("quality", "radpeer", "reading_time", "preference")
POPULATIONS = {
    "all_randomized": "every enrolled case and every randomized reader; the analysis uses every outcome observed "
                      "(missing outcomes taken as missing at random given the model)",
    "complete_cases": "cases with the endpoint's outcome in both arms (a paired design; in a case-randomized trial, "
                      "cases with the outcome)",
}
VARIABLES = {
    "quality": {"final_report": "the experts' quality score of the report version they were shown (the latest: a "
                                "score given before a correction is superseded)",
                "signed_report": "the same, among reports signed off by a senior only"},
    "radpeer": {"final_report": "the experts' RADPEER-based score of the report version they were shown",
                "signed_report": "the same, among reports signed off by a senior only"},
    "reading_time": {"active_seconds": "active reading time of the read (server-stamped events; idle and hidden "
                                       "time excluded)",
                     "wall_seconds": "wall time from first opening to submission"},
    "preference": {"votes": "each expert's vote between the two reports of a case"},
}
# Intercurrent events the data can show today, the strategies defined for each (the first is the default).
INTERCURRENT_EVENTS = {
    "draft_unavailable": {
        "short": "no ready AI draft (case)",
        "label": "no ready AI draft of the trial model for the case (failed, pending or never made)",
        "strategies": ("treatment_policy", "hypothetical")},
    "read_not_submitted": {
        "short": "read not submitted",
        "label": "a read routed to a reader and not submitted (its outcome is missing)",
        "strategies": ("treatment_policy",)},
    "report_corrected": {
        "short": "report corrected",
        "label": "the report was corrected after submission (a later version exists)",
        "strategies": ("treatment_policy", "hypothetical")},
    "wrong_arm": {
        "short": "read in the wrong arm",
        "label": "a read in another arm than its randomization gave (the reader's allocation; the case's in a "
                 "case-randomized trial; in a crossover, period 1 in the allocated arm)",
        "strategies": ("treatment_policy", "hypothetical")},
    # a prospective trial's deviations log (trial.Deviation, the dataset's deviations)
    "draft_late": {
        "short": "AI draft not shown (case)",
        "label": "the case's AI draft was not shown to its reader: it failed or came after the trial's limit, and "
                 "the draft rule let the read open without it (a property of the case, the same in both arms)",
        "strategies": ("treatment_policy", "hypothetical")},
    "reader_withdrawn": {
        "short": "read re-routed (reader withdrawn)",
        "label": "a read that replaced the open read of a withdrawn reader (the case went to another reader of "
                 "the arm)",
        "strategies": ("treatment_policy", "hypothetical")},
    "case_withdrawn": {
        "short": "case withdrawn",
        "label": "the case was withdrawn after enrolment (what was observed before stays in the data)",
        "strategies": ("treatment_policy", "hypothetical")},
}
STRATEGIES = {
    "treatment_policy": "treatment policy: the outcome as observed whatever the event, in the arm as randomized",
    "hypothetical": "hypothetical: the outcome had the event not occurred, estimated by leaving the affected "
                    "outcomes out (missing at random given the model)",
}
# Events named in the design that no column of the dataset shows (see docs/statistics.md): none since the
# deviations log (format 4) holds the late drafts and the withdrawals.
EVENTS_NOT_IN_DATA: dict[str, str] = {}
_MEASURES = {
    "lmm": "difference in mean {what} X − Y (points), adjusted for the model's covariates, linear mixed model",
    "ordinal_glmm": "odds ratio of a higher {what} X vs Y, cumulative-logit mixed model",
    "paired": "mean of the case differences of expert-mean {what} X − Y (fixed readers)",
    "clmm": "odds ratio of a higher {what} X vs Y, case intercept only (fixed readers)",
}
SUMMARY_MEASURES = {
    **{("quality", t): m.format(what="quality score") for t, m in _MEASURES.items()},
    **{("radpeer", t): m.format(what="RADPEER-based score") for t, m in _MEASURES.items()},
    ("reading_time", "lmm"): "ratio of geometric mean reading times X / Y (and the difference in mean seconds), "
                             "linear mixed model on the log scale",
    ("reading_time", "wall_lmm"): "ratio of geometric mean wall times X / Y, linear mixed model on the log scale",
    ("reading_time", "paired"): "ratio of geometric means of the paired case means X / Y (fixed readers)",
    ("preference", "glmm"): "P(an expert prefers the X report) among decisive votes, for a typical case, expert "
                            "and pair of readers",
    ("preference", "binomial"): "share of decisive cases whose experts' majority preferred X (fixed readers)",
}
# ---- interim looks (stats.interim computes them; docs/statistics.md, section "Interim looks")
INTERIM_KINDS = {
    "blinded_ssr": "blinded sample-size re-estimation (pooled variance components; no alpha spent)",
    "safety": "safety: missed critical findings per arm, for the data-monitoring committee",
    "efficacy": "efficacy: the primary analysis against a Lan–DeMets spending boundary, for the committee",
}
INTERIM_SPENDING = {"obrien_fleming": "O’Brien–Fleming type", "pocock": "Pocock type"}
INTERIM_MAX_LOOKS = 10
POWER_DEFAULTS: dict[str, Any] = {
    "n_cases": 296, "readers_per_arm": 10, "n_experts": 5, "n_sites": 3, "alpha": 0.05,
    "quality": {"effect": 0.25, "reader_sd": 0.25, "report_sd": 0.35, "residual_sd": 0.6},
    "time": {"time_ratio": 0.82, "reader_sd": 0.2, "report_sd": 0.0, "residual_sd": 0.3},
    "preference": {"vote_sd": 0.5, "tie_band": 0.25},
    "source": "typed in",
}


class PlanError(ValueError):
    """A plan that cannot be used; the message says which part and why."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def label_of(endpoint: str, test: str) -> str:
    """The words for an analysis, in the report and the plan form."""
    return ANALYSIS_LABELS.get((endpoint, test), TEST_LABELS[test])


def default_plan(design: str = "paired_parallel") -> dict[str, Any]:
    """The reader-aware analysis of each design: quality primary by the LMM; time, preference, RADPEER key secondaries.

    Paired-parallel (readers randomized, each case read once per arm): random case, reader, expert
    and report (case:arm), site fixed. Crossover: reader:arm and the report (case:arm:reader) as
    well, and period fixed. Case-randomized (each case read once, readers crossed with arms): case,
    reader, expert and reader:arm; no preference, which needs two reports of a case.
    """
    crossover = design == "crossover"
    case_randomized = design == "case_randomized"
    if crossover:
        quality_terms = ["case", "reader", "expert", "reader:arm", "case:arm", "case:arm:reader"]
        time_terms = ["case", "reader", "reader:arm", "case:arm"]
        detection_terms = ["case", "reader", "reader:arm"]
        covariates = ["site", "period"]
    elif case_randomized:
        quality_terms = ["case", "reader", "expert", "reader:arm"]
        time_terms = ["case", "reader", "reader:arm"]
        detection_terms = ["case", "reader", "reader:arm"]
        covariates = ["site"]
    else:
        quality_terms = ["case", "reader", "expert", "case:arm"]
        time_terms = ["case", "reader"]
        detection_terms = ["case", "reader"]
        covariates = ["site"]
    secondary = [{"endpoint": "reading_time", "test": "lmm"}]
    if not case_randomized:
        secondary.append({"endpoint": "preference", "test": "glmm"})
    secondary.append({"endpoint": "radpeer", "test": "lmm"})
    sensitivity = [{"endpoint": "quality", "test": "ordinal_glmm"}]
    if not case_randomized:
        sensitivity.append({"endpoint": "quality", "test": "paired"})
    sensitivity.append({"endpoint": "reading_time", "test": "wall_lmm"})
    if not case_randomized:
        sensitivity += [{"endpoint": "reading_time", "test": "paired"}, {"endpoint": "preference", "test": "binomial"}]
    if crossover:
        sensitivity.append({"endpoint": "detection", "test": "glmm"})
    if not case_randomized:
        sensitivity.append({"endpoint": "detection", "test": "mcnemar"})
    return {
        "schema": SCHEMA,
        "alpha": 0.05,
        "confidence_level": 0.95,
        "primary": {"endpoint": "quality", "test": "lmm"},
        "secondary": secondary,
        "secondary_adjustment": "holm",
        "gatekeeping": True,
        "exploratory": [
            {"endpoint": "detection", "test": "mrmc" if crossover else "glmm"},
            {"endpoint": "ai_auc", "test": "delong"},
        ],
        "exploratory_adjustment": "bh",
        "sensitivity": sensitivity,
        "subgroups": [
            {"name": "site", "by": "site", "endpoints": ["quality", "reading_time"]},
            {"name": "complex_reference", "by": "reference", "min_findings": 3,
             "endpoints": ["reading_time", "quality"]},
            {"name": "complex_ai", "by": "ai", "min_findings": 3, "ai_threshold": 0.5,
             "endpoints": ["reading_time", "quality"]},
        ],
        "subgroup_adjustment": "bh",
        "random_effects": {"quality": quality_terms, "radpeer": list(quality_terms), "reading_time": time_terms,
                           "detection": detection_terms},
        "covariates": {"quality": list(covariates), "radpeer": list(covariates), "reading_time": list(covariates),
                       "detection": []},
        "preference_min_votes": 3,
        "ai_threshold": 0.5,
        "estimands": default_estimands(),
        "tipping_point": True,
        "power": None,
        "notes": "",
    }


def default_estimands() -> dict[str, dict[str, Any]]:
    """Every endpoint on all randomized cases and readers, its default variable, treatment policy for every event.

    The summary measure is filled in by `validate` from the endpoint's main test.
    """
    return {endpoint: {"population": "all_randomized", "variable": next(iter(VARIABLES[endpoint])),
                       "intercurrent_events": {e: spec["strategies"][0] for e, spec in INTERCURRENT_EVENTS.items()}}
            for endpoint in ESTIMAND_ENDPOINTS}


def upgrade(content: dict[str, Any]) -> dict[str, Any]:
    """A copy of a plan in the current schema, with the meaning it had when it was written.

    Schema 1 → 2: the new settings take the values that reproduce what schema 1 did: no fixed
    covariates (its models had none), no gatekeeping (its key secondaries were adjusted by Holm
    whatever the primary's result), the subgroups adjusted by the exploratory method (they were in
    the exploratory family) and a case majority from any number of votes. The stored plan is never
    rewritten: this is how it is read.
    """
    if not isinstance(content, dict):
        raise PlanError("The analysis plan must be a JSON object.")
    plan = copy.deepcopy(content)
    schema = plan.get("schema", SCHEMA)
    if schema not in READABLE_SCHEMAS:
        raise PlanError(f"This platform reads plan schemas {', '.join(map(str, READABLE_SCHEMAS))}, not {schema}.",
                        field="schema")
    if schema == 1:
        schema = plan["schema"] = 2
        plan.setdefault("covariates", {})
        plan.setdefault("gatekeeping", False)
        plan.setdefault("subgroup_adjustment", plan.get("exploratory_adjustment", "bh"))
        plan.setdefault("preference_min_votes", 1)
    if schema == 2:
        # schema 2 analysed every row as recorded, had no tipping point and no power section
        plan["schema"] = 3
        plan.setdefault("estimands", None)
        plan.setdefault("tipping_point", False)
        plan.setdefault("power", None)
    return plan


def read_plan(content: dict[str, Any]) -> dict[str, Any]:
    """What a run executes: the validated current reading of a stored plan (frozen or not); the input is untouched."""
    return validate(content)


def _entry(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PlanError(f"{where}: each entry needs an endpoint and a test.", field=where)
    endpoint = value.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise PlanError(f"{where}: unknown endpoint “{endpoint}”; choose one of {', '.join(ENDPOINTS)}.", field=where)
    tests = ENDPOINTS[endpoint]["tests"]
    test = value.get("test") or tests[0]
    if test not in tests:
        raise PlanError(f"{where}: the endpoint “{endpoint}” takes the test {' or '.join(tests)}, not “{test}”.",
                        field=where)
    return {"endpoint": endpoint, "test": test}


def _number(value: Any, where: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where} must be a number.", field=where) from None
    if not (math.isfinite(number) and low < number < high):
        raise PlanError(f"{where} must lie strictly between {low:g} and {high:g}.", field=where)
    return number


def _terms(mapping: Any, *, key: str, allowed: tuple[str, ...], noun: str, allow_empty: bool) -> dict[str, list[str]]:
    if not isinstance(mapping, dict):
        raise PlanError(f"{key} must map an endpoint to its {noun}s.", field=key)
    out = {}
    for endpoint, terms in mapping.items():
        if endpoint not in RANDOM_ENDPOINTS:
            raise PlanError(f"{key}: “{endpoint}” has no mixed model.", field=key)
        if not isinstance(terms, list) or (not terms and not allow_empty):
            raise PlanError(f"{key} of {endpoint}: give at least one {noun}.", field=key)
        bad = [t for t in terms if t not in allowed]
        if bad:
            raise PlanError(f"{key} of {endpoint}: unknown {noun} {', '.join(map(str, bad))}; "
                            f"use {', '.join(allowed)}.", field=key)
        if len(set(terms)) != len(terms):
            raise PlanError(f"{key} of {endpoint}: a {noun} is repeated.", field=key)
        out[endpoint] = list(terms)
    return out


def validate(content: Any) -> dict[str, Any]:
    """A clean copy of the plan in the current schema, or PlanError naming what is wrong.

    Unknown keys are refused (no silent typos). A schema-1 plan is read through `upgrade`.
    """
    if not isinstance(content, dict):
        raise PlanError("The analysis plan must be a JSON object.")
    known = set(default_plan()) | {"schema", "interim"}
    unknown = set(content) - known
    if unknown:
        raise PlanError(f"Unknown plan settings: {', '.join(sorted(unknown))}.")
    plan = upgrade(content)
    out: dict[str, Any] = {"schema": SCHEMA}
    out["alpha"] = _number(plan.get("alpha", 0.05), "alpha", 0, 0.5)
    out["confidence_level"] = _number(plan.get("confidence_level", 0.95), "confidence_level", 0.5, 1)
    if "primary" not in plan:
        raise PlanError("A plan needs a primary endpoint.", field="primary")
    out["primary"] = _entry(plan["primary"], "primary")
    seen = {(out["primary"]["endpoint"], out["primary"]["test"])}
    for family in ("secondary", "exploratory", "sensitivity"):
        entries = plan.get(family, [])
        if not isinstance(entries, list):
            raise PlanError(f"{family} must be a list of endpoints.", field=family)
        cleaned = []
        for i, value in enumerate(entries):
            entry = _entry(value, f"{family}[{i + 1}]")
            key = (entry["endpoint"], entry["test"])
            if key in seen:
                raise PlanError(f"{family}: “{entry['endpoint']}” by {entry['test']} is already in the plan "
                                "(each analysis belongs to one family).", field=family)
            seen.add(key)
            cleaned.append(entry)
        out[family] = cleaned
    for key, default in (("secondary_adjustment", "holm"), ("exploratory_adjustment", "bh"),
                         ("subgroup_adjustment", "bh")):
        value = plan.get(key, default)
        if value not in ADJUSTMENTS:
            raise PlanError(f"{key} must be one of {', '.join(ADJUSTMENTS)}.", field=key)
        out[key] = value
    gatekeeping = plan.get("gatekeeping", True)
    if not isinstance(gatekeeping, bool):
        raise PlanError("gatekeeping must be true or false.", field="gatekeeping")
    out["gatekeeping"] = gatekeeping
    out["ai_threshold"] = _number(plan.get("ai_threshold", 0.5), "ai_threshold", 0, 1)
    votes = plan.get("preference_min_votes", 3)
    if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= 50:
        raise PlanError("preference_min_votes must be a whole number from 1 to 50.", field="preference_min_votes")
    out["preference_min_votes"] = votes

    out["random_effects"] = _terms(plan.get("random_effects", {}), key="random_effects", allowed=RANDOM_TERMS,
                                   noun="term", allow_empty=False)
    for endpoint in ("reading_time", "detection"):
        if "expert" in out["random_effects"].get(endpoint, []):
            raise PlanError(f"random_effects of {endpoint}: experts do not read; drop “expert”.",
                            field="random_effects")
    out["covariates"] = _terms(plan.get("covariates", {}), key="covariates", allowed=COVARIATES,
                               noun="covariate", allow_empty=True)

    subgroups = plan.get("subgroups", [])
    if not isinstance(subgroups, list):
        raise PlanError("subgroups must be a list.", field="subgroups")
    out["subgroups"] = []
    names = set()
    for i, sub in enumerate(subgroups):
        where = f"subgroups[{i + 1}]"
        if not isinstance(sub, dict):
            raise PlanError(f"{where}: a subgroup needs a name, a rule and endpoints.", field="subgroups")
        name = str(sub.get("name", "")).strip()
        if not name or not name.replace("_", "").isalnum() or len(name) > 40:
            raise PlanError(f"{where}: the name must be letters, digits and _ (at most 40).", field="subgroups")
        if name in names:
            raise PlanError(f"{where}: the subgroup name “{name}” is used twice.", field="subgroups")
        names.add(name)
        by = sub.get("by")
        if by not in SUBGROUP_BY:
            raise PlanError(f"{where}: “by” must be one of {', '.join(SUBGROUP_BY)}.", field="subgroups")
        endpoints = sub.get("endpoints") or ["reading_time", "quality"]
        bad = [e for e in endpoints if e not in SUBGROUP_ENDPOINTS]
        if bad:
            raise PlanError(f"{where}: subgroup endpoints are {', '.join(SUBGROUP_ENDPOINTS)}; "
                            f"not {', '.join(map(str, bad))}.", field="subgroups")
        clean: dict[str, Any] = {"name": name, "by": by}
        if by != "site":
            try:
                minimum = int(sub.get("min_findings", 3))
            except (TypeError, ValueError):
                raise PlanError(f"{where}: min_findings must be a whole number.", field="subgroups") from None
            if minimum < 1:
                raise PlanError(f"{where}: min_findings must be at least 1.", field="subgroups")
            clean["min_findings"] = minimum
        clean["endpoints"] = list(dict.fromkeys(endpoints))
        if by == "ai":
            clean["ai_threshold"] = _number(sub.get("ai_threshold", out["ai_threshold"]), f"{where}.ai_threshold", 0, 1)
        out["subgroups"].append(clean)
    out["estimands"] = _estimands(plan.get("estimands", default_estimands()), out)
    tipping = plan.get("tipping_point", True)
    if not isinstance(tipping, bool):
        raise PlanError("tipping_point must be true or false.", field="tipping_point")
    out["tipping_point"] = tipping
    out["power"] = _power(plan.get("power"), out["alpha"])
    # Optional and absent from plans without interim looks (every older plan): such a plan reads, hashes and
    # re-runs exactly as before.
    interim = _interim(plan.get("interim"), power=out["power"])
    if interim is not None:
        out["interim"] = interim
    notes = plan.get("notes", "")
    if not isinstance(notes, str) or len(notes) > 10_000:
        raise PlanError("notes must be text of at most 10,000 characters.", field="notes")
    out["notes"] = notes
    return out


def main_test(plan: dict[str, Any], endpoint: str) -> str:
    """The test that answers an endpoint: its first entry in the plan's order (primary, secondary, exploratory,
    sensitivity), else the endpoint's default test."""
    for entry in [plan["primary"], *plan.get("secondary", []), *plan.get("exploratory", []),
                  *plan.get("sensitivity", [])]:
        if entry["endpoint"] == endpoint:
            return entry["test"]
    return ENDPOINTS[endpoint]["tests"][0]


def _estimands(value: Any, plan: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Per endpoint: population, variable, a strategy for every intercurrent event, the summary measure (derived
    from the endpoint's main test, so that the measure stated and the measure computed cannot disagree)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PlanError("estimands must map an endpoint to its estimand.", field="estimands")
    bad = [e for e in value if e not in ESTIMAND_ENDPOINTS]
    if bad:
        raise PlanError(f"estimands: no estimand is defined for {', '.join(map(str, bad))}; "
                        f"use {', '.join(ESTIMAND_ENDPOINTS)}.", field="estimands")
    defaults = default_estimands()
    out = {}
    for endpoint in ESTIMAND_ENDPOINTS:
        spec = value.get(endpoint, defaults[endpoint])
        where = f"estimands of {endpoint}"
        if not isinstance(spec, dict):
            raise PlanError(f"{where}: give a population, a variable and intercurrent events.", field="estimands")
        unknown = set(spec) - {"population", "variable", "intercurrent_events", "summary_measure"}
        if unknown:
            raise PlanError(f"{where}: unknown settings {', '.join(sorted(unknown))}.", field="estimands")
        population = spec.get("population", "all_randomized")
        if population not in POPULATIONS:
            raise PlanError(f"{where}: the population is one of {', '.join(POPULATIONS)}.", field="estimands")
        variable = spec.get("variable", defaults[endpoint]["variable"])
        if variable not in VARIABLES[endpoint]:
            raise PlanError(f"{where}: the variable is one of {', '.join(VARIABLES[endpoint])}.", field="estimands")
        events = spec.get("intercurrent_events", {})
        if not isinstance(events, dict):
            raise PlanError(f"{where}: intercurrent_events must map an event to its strategy.", field="estimands")
        strategies = {}
        for event, allowed in INTERCURRENT_EVENTS.items():
            strategy = events.get(event, allowed["strategies"][0])
            if strategy not in allowed["strategies"]:
                raise PlanError(f"{where}: the event {event} takes the strategy "
                                f"{' or '.join(allowed['strategies'])}, not “{strategy}”.", field="estimands")
            strategies[event] = strategy
        extra = set(events) - set(INTERCURRENT_EVENTS)
        if extra:
            raise PlanError(f"{where}: unknown intercurrent events {', '.join(sorted(map(str, extra)))}; the data "
                            f"show {', '.join(INTERCURRENT_EVENTS)}.", field="estimands")
        out[endpoint] = {"population": population, "variable": variable, "intercurrent_events": strategies,
                         "summary_measure": SUMMARY_MEASURES.get((endpoint, main_test(plan, endpoint)), "")}
    return out


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlanError(f"{where} must be a whole number from {low} to {high:,}.", field="power")
    return value


def _nonnegative(value: Any, where: str, *, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where} must be a number.", field="power") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise PlanError(f"{where} must be a finite number {'> 0' if positive else '≥ 0'}.", field="power")
    return number


def _power(value: Any, alpha: float) -> dict[str, Any] | None:
    """The sample-size inputs (variance components as SDs on the analysis scale); `result` is kept as stored:
    it is computed when the plan is frozen (stats.methods.power.plan_power)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PlanError("power must be an object of sample-size inputs.", field="power")
    unknown = set(value) - set(POWER_DEFAULTS) - {"result"}
    if unknown:
        raise PlanError(f"power: unknown settings {', '.join(sorted(unknown))}.", field="power")
    d = POWER_DEFAULTS
    out: dict[str, Any] = {
        "n_cases": _whole(value.get("n_cases", d["n_cases"]), "power: n_cases", 2, 1_000_000),
        "readers_per_arm": _whole(value.get("readers_per_arm", d["readers_per_arm"]), "power: readers_per_arm",
                                  2, 10_000),
        "n_experts": _whole(value.get("n_experts", d["n_experts"]), "power: n_experts", 1, 1_000),
        "n_sites": _whole(value.get("n_sites", d["n_sites"]), "power: n_sites", 1, 1_000),
        "alpha": _number(value.get("alpha", alpha), "power: alpha", 0, 0.5),
    }
    for part in ("quality", "time", "preference"):
        given = value.get(part, {})
        if not isinstance(given, dict):
            raise PlanError(f"power: {part} must be an object.", field="power")
        unknown = set(given) - set(d[part])
        if unknown:
            raise PlanError(f"power: {part}: unknown settings {', '.join(sorted(unknown))}.", field="power")
        section = {}
        for key, default in d[part].items():
            where = f"power: {part} {key}"
            raw = given.get(key, default)
            if key == "effect":
                section[key] = _number(raw, where, -100, 100)
            else:
                section[key] = _nonnegative(raw, where, positive=key == "time_ratio")
        out[part] = section
    source = value.get("source", d["source"])
    if not isinstance(source, str) or len(source) > 500:
        raise PlanError("power: source must be text of at most 500 characters.", field="power")
    out["source"] = source
    result = value.get("result")
    out["result"] = result if isinstance(result, dict) else None
    return out


def _fractions(value: Any, where: str, *, below_one: bool) -> list[float]:
    if not isinstance(value, list) or not value:
        raise PlanError(f"{where}: give the information fractions of the looks as a list, e.g. [0.5].",
                        field="interim")
    if len(value) > INTERIM_MAX_LOOKS:
        raise PlanError(f"{where}: at most {INTERIM_MAX_LOOKS} looks.", field="interim")
    out = []
    for f in value:
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f):
            raise PlanError(f"{where}: each information fraction must be a number.", field="interim")
        if not 0 < f < 1 if below_one else not 0 < f <= 1:
            raise PlanError(f"{where}: an information fraction lies in (0, {'1)' if below_one else '1]'}, not {f:g}"
                            + (" (the final analysis is the look at 1)." if below_one else "."), field="interim")
        out.append(float(f))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise PlanError(f"{where}: the information fractions must increase from look to look.", field="interim")
    return out


def _interim(value: Any, *, power: dict[str, Any] | None) -> dict[str, Any] | None:
    """The planned interim looks. Information fraction = cases whose scoring is complete / planned cases
    (`planned_cases`, else the power section's n_cases). Each kind is optional; a plan without the section plans no
    look."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PlanError("interim must be an object: planned_cases, blinded_ssr, safety, efficacy.", field="interim")
    unknown = set(value) - {"planned_cases", *INTERIM_KINDS}
    if unknown:
        raise PlanError(f"interim: unknown settings {', '.join(sorted(map(str, unknown)))}; use planned_cases, "
                        f"{', '.join(INTERIM_KINDS)}.", field="interim")
    if not any(value.get(kind) is not None for kind in INTERIM_KINDS):
        raise PlanError("interim: plan at least one look (blinded_ssr, safety or efficacy), or leave the section "
                        "out.", field="interim")
    out: dict[str, Any] = {}
    planned = value.get("planned_cases")
    if planned is None:
        if not power:
            raise PlanError("interim: give planned_cases or a power section (its n_cases): the information fraction "
                            "is cases whose scoring is complete / planned cases.", field="interim")
        planned = power["n_cases"]
    if isinstance(planned, bool) or not isinstance(planned, int) or not 2 <= planned <= 1_000_000:
        raise PlanError("interim: planned_cases must be a whole number from 2 to 1,000,000.", field="interim")
    out["planned_cases"] = planned
    ssr = value.get("blinded_ssr")
    if ssr is not None:
        if not isinstance(ssr, dict) or set(ssr) - {"fraction"}:
            raise PlanError("interim: blinded_ssr takes one setting, fraction (e.g. {\"fraction\": 0.5}).",
                            field="interim")
        if not power:
            raise PlanError("interim: the blinded sample-size re-estimation takes the planned effect, readers and "
                            "experts from the power section; add one.", field="interim")
        out["blinded_ssr"] = {"fraction": _fractions([ssr.get("fraction", 0.5)], "interim: blinded_ssr",
                                                     below_one=True)[0]}
    safety = value.get("safety")
    if safety is not None:
        if not isinstance(safety, dict):
            raise PlanError("interim: safety must be an object: fractions, critical_findings, margin.",
                            field="interim")
        unknown = set(safety) - {"fractions", "critical_findings", "margin"}
        if unknown:
            raise PlanError(f"interim: safety: unknown settings {', '.join(sorted(map(str, unknown)))}.",
                            field="interim")
        critical = safety.get("critical_findings")
        if critical is not None:
            if (not isinstance(critical, list) or not critical
                    or any(not isinstance(f, str) or not f.strip() for f in critical)):
                raise PlanError("interim: safety: critical_findings must be a list of finding names (leave it out "
                                "for all of the trial's findings).", field="interim")
            critical = [f.strip() for f in critical]
            if len(set(critical)) != len(critical):
                raise PlanError("interim: safety: a critical finding is named twice.", field="interim")
        margin = safety.get("margin", 0.0)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not -1 < margin < 1:
            raise PlanError("interim: safety: margin (a difference of miss rates, treatment − control) must lie "
                            "strictly between -1 and 1.", field="interim")
        out["safety"] = {"fractions": _fractions(safety.get("fractions"), "interim: safety", below_one=False),
                         "critical_findings": critical, "margin": float(margin)}
    efficacy = value.get("efficacy")
    if efficacy is not None:
        if not isinstance(efficacy, dict):
            raise PlanError("interim: efficacy must be an object: fractions, spending.", field="interim")
        unknown = set(efficacy) - {"fractions", "spending"}
        if unknown:
            raise PlanError(f"interim: efficacy: unknown settings {', '.join(sorted(map(str, unknown)))}.",
                            field="interim")
        spending = efficacy.get("spending", "obrien_fleming")
        if spending not in INTERIM_SPENDING:
            raise PlanError(f"interim: efficacy: spending must be one of {', '.join(INTERIM_SPENDING)} "
                            "(Lan–DeMets types).", field="interim")
        out["efficacy"] = {"fractions": _fractions(efficacy.get("fractions"), "interim: efficacy", below_one=True),
                           "spending": spending}
    return out


def interim_lines(content: dict[str, Any]) -> list[str]:
    """One line per planned kind of interim look, for the plan's summary ([] when none is planned)."""
    try:
        interim = read_plan(content).get("interim")
    except PlanError:
        return []
    if not interim:
        return []
    lines = [f"information fraction = cases whose scoring is complete / {interim['planned_cases']} planned cases"]
    if "blinded_ssr" in interim:
        lines.append(f"blinded sample-size re-estimation at {interim['blinded_ssr']['fraction']:g} (no alpha spent)")
    if "safety" in interim:
        s = interim["safety"]
        findings = ", ".join(s["critical_findings"]) if s["critical_findings"] else "all of the trial's findings"
        lines.append(f"safety looks at {', '.join(f'{f:g}' for f in s['fractions'])}: missed critical findings "
                     f"({findings}), margin {s['margin']:g}")
    if "efficacy" in interim:
        e = interim["efficacy"]
        lines.append(f"efficacy looks at {', '.join(f'{f:g}' for f in e['fractions'])}, Lan–DeMets "
                     f"{INTERIM_SPENDING[e['spending']]} spending; the final analysis is the last look")
    return lines


def with_power_result(content: dict[str, Any], *, design: str) -> dict[str, Any]:
    """A copy of a validated plan whose power section carries its computed result (what a freeze stores)."""
    if not content.get("power"):
        return content
    from .methods.power import plan_power  # scipy: imported only when a plan is frozen with a power section

    out = copy.deepcopy(content)
    inputs = {k: v for k, v in out["power"].items() if k != "result"}
    out["power"]["result"] = plan_power(inputs, design=design)
    return out


def estimand_lines(content: dict[str, Any]) -> list[str]:
    """One line per endpoint of a plan's estimands, for the plan's summary (any readable schema)."""
    try:
        estimands = read_plan(content).get("estimands")
    except PlanError:
        return []
    if not estimands:
        return ["not stated (a schema-1 or schema-2 plan): every row analysed as recorded"]
    lines = []
    for endpoint, spec in estimands.items():
        events = ", ".join(f"{event.replace('_', ' ')}: {strategy.replace('_', ' ')}"
                           for event, strategy in spec["intercurrent_events"].items())
        lines.append(f"{endpoint}: {spec['population'].replace('_', ' ')}, {spec['variable'].replace('_', ' ')}; "
                     f"{events}")
    return lines


def canonical_json(document: Any) -> bytes:
    """The one byte form that is hashed: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def frozen_document(*, trial_code: str, version: int, content: dict[str, Any]) -> dict[str, Any]:
    """What a freeze commits to: the plan tied to its trial and version."""
    return {"trial": trial_code, "version": version, "plan": content}


def plan_sha256(*, trial_code: str, version: int, content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(frozen_document(trial_code=trial_code, version=version,
                                                         content=content))).hexdigest()


def analyses_of(plan: dict[str, Any]) -> list[dict[str, str]]:
    """Every (endpoint, test) the plan asks for, with its role: primary, secondary, exploratory, sensitivity."""
    out = [{**plan["primary"], "role": "primary"}]
    for family in ("secondary", "exploratory", "sensitivity"):
        out += [{**entry, "role": family} for entry in plan.get(family, [])]
    return out
