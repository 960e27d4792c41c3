"""The analysis plan as data (no Django): its schema, a default per trial design, validation and its canonical hash.

A plan names the primary endpoint, the key secondary family (Holm), the exploratory family
(Benjamini–Hochberg), sensitivity analyses, subgroups and the random effects of the mixed
models, each endpoint with the test that answers it. Its canonical JSON (sorted keys, no
whitespace, UTF-8) is what is hashed at freezing, so anyone can recompute the hash from the
plan file the platform hands out.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

SCHEMA = 1

# endpoint → (label, tests it allows, the default test). The first test is the default.
ENDPOINTS: dict[str, dict[str, Any]] = {
    "quality": {"label": "Report quality (Likert 1–5)", "tests": ("paired", "lmm", "clmm")},
    "radpeer": {"label": "RADPEER-based agreement score", "tests": ("paired", "lmm", "clmm")},
    "reading_time": {"label": "Reading time (active seconds)", "tests": ("lmm", "paired")},
    "preference": {"label": "Expert preference (case majority)", "tests": ("binomial",)},
    "detection": {"label": "Detection of findings by arm", "tests": ("mcnemar", "mrmc")},
    "ai_auc": {"label": "AI finding scores against the reference standard", "tests": ("delong",)},
}
TEST_LABELS = {
    "paired": "paired case-level difference (t interval) with Wilcoxon signed-rank",
    "lmm": "linear mixed model (REML, Satterthwaite df)",
    "clmm": "cumulative-logit mixed model (random case intercept)",
    "binomial": "exact binomial test of case majorities, Wilson interval",
    "mcnemar": "sensitivity/specificity with Wilson intervals, McNemar on paired reads",
    "mrmc": "Obuchowski–Rockette / Hillis MRMC (crossover designs)",
    "delong": "AUC with DeLong interval",
}
# Grouping terms a mixed model may take a random intercept for.
RANDOM_TERMS = ("case", "reader", "expert", "reader:arm", "case:arm", "site")
SUBGROUP_BY = {
    "reference": "cases with at least N positive findings by the reference standard",
    "ai": "cases with at least N findings scored at or above the AI threshold",
}
ADJUSTMENTS = ("holm", "bh", "none")
SUBGROUP_ENDPOINTS = ("quality", "radpeer", "reading_time", "preference")


class PlanError(ValueError):
    """A plan that cannot be used; the message says which part and why."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def default_plan(design: str = "paired_parallel") -> dict[str, Any]:
    """The paper's analysis: quality primary; time, preference, RADPEER key secondaries; detection and AI exploratory."""
    crossover = design == "crossover"
    case_randomized = design == "case_randomized"
    quality_test = "lmm" if case_randomized else "paired"
    time_terms = ["reader"] if case_randomized else ["case", "reader"]
    if crossover:
        time_terms = ["case", "reader", "reader:arm", "case:arm"]
    quality_terms = ["reader", "expert"] if case_randomized else ["case", "reader", "expert"]
    if crossover:
        quality_terms = ["case", "reader", "expert", "reader:arm"]
    return {
        "schema": SCHEMA,
        "alpha": 0.05,
        "confidence_level": 0.95,
        "primary": {"endpoint": "quality", "test": quality_test},
        "secondary": [
            {"endpoint": "reading_time", "test": "lmm"},
            {"endpoint": "preference", "test": "binomial"},
            {"endpoint": "radpeer", "test": quality_test},
        ],
        "secondary_adjustment": "holm",
        "exploratory": [
            {"endpoint": "detection", "test": "mrmc" if crossover else "mcnemar"},
            {"endpoint": "ai_auc", "test": "delong"},
        ],
        "exploratory_adjustment": "bh",
        "sensitivity": ([{"endpoint": "quality", "test": "clmm"}] if case_randomized else
                        [{"endpoint": "quality", "test": "lmm"}, {"endpoint": "quality", "test": "clmm"},
                         {"endpoint": "reading_time", "test": "paired"}]),
        "subgroups": [
            {"name": "complex_reference", "by": "reference", "min_findings": 3,
             "endpoints": ["reading_time", "quality"]},
            {"name": "complex_ai", "by": "ai", "min_findings": 3, "ai_threshold": 0.5,
             "endpoints": ["reading_time", "quality"]},
        ],
        "random_effects": {"quality": quality_terms, "radpeer": list(quality_terms), "reading_time": time_terms},
        "ai_threshold": 0.5,
        "notes": "",
    }


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


def validate(content: Any) -> dict[str, Any]:
    """A clean copy of the plan, or PlanError naming what is wrong. Unknown keys are refused (no silent typos)."""
    if not isinstance(content, dict):
        raise PlanError("The analysis plan must be a JSON object.")
    known = set(default_plan()) | {"schema"}
    unknown = set(content) - known
    if unknown:
        raise PlanError(f"Unknown plan settings: {', '.join(sorted(unknown))}.")
    plan = copy.deepcopy(content)
    out: dict[str, Any] = {"schema": SCHEMA}
    if plan.get("schema", SCHEMA) != SCHEMA:
        raise PlanError(f"This platform reads plan schema {SCHEMA}, not {plan.get('schema')}.", field="schema")
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
    for key, default in (("secondary_adjustment", "holm"), ("exploratory_adjustment", "bh")):
        value = plan.get(key, default)
        if value not in ADJUSTMENTS:
            raise PlanError(f"{key} must be one of {', '.join(ADJUSTMENTS)}.", field=key)
        out[key] = value
    out["ai_threshold"] = _number(plan.get("ai_threshold", 0.5), "ai_threshold", 0, 1)

    random = plan.get("random_effects", {})
    if not isinstance(random, dict):
        raise PlanError("random_effects must map an endpoint to its grouping terms.", field="random_effects")
    out["random_effects"] = {}
    for endpoint, terms in random.items():
        if endpoint not in ("quality", "radpeer", "reading_time"):
            raise PlanError(f"random_effects: “{endpoint}” has no mixed model.", field="random_effects")
        if not isinstance(terms, list) or not terms:
            raise PlanError(f"random_effects of {endpoint}: give at least one grouping term.", field="random_effects")
        bad = [t for t in terms if t not in RANDOM_TERMS]
        if bad:
            raise PlanError(f"random_effects of {endpoint}: unknown term {', '.join(map(str, bad))}; "
                            f"use {', '.join(RANDOM_TERMS)}.", field="random_effects")
        if endpoint == "reading_time" and "expert" in terms:
            raise PlanError("random_effects of reading_time: experts do not read; drop “expert”.",
                            field="random_effects")
        if len(set(terms)) != len(terms):
            raise PlanError(f"random_effects of {endpoint}: a term is repeated.", field="random_effects")
        out["random_effects"][endpoint] = list(terms)

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
        try:
            minimum = int(sub.get("min_findings", 3))
        except (TypeError, ValueError):
            raise PlanError(f"{where}: min_findings must be a whole number.", field="subgroups") from None
        if minimum < 1:
            raise PlanError(f"{where}: min_findings must be at least 1.", field="subgroups")
        endpoints = sub.get("endpoints") or ["reading_time", "quality"]
        bad = [e for e in endpoints if e not in SUBGROUP_ENDPOINTS]
        if bad:
            raise PlanError(f"{where}: subgroup endpoints are {', '.join(SUBGROUP_ENDPOINTS)}; "
                            f"not {', '.join(map(str, bad))}.", field="subgroups")
        clean = {"name": name, "by": by, "min_findings": minimum, "endpoints": list(dict.fromkeys(endpoints))}
        if by == "ai":
            clean["ai_threshold"] = _number(sub.get("ai_threshold", out["ai_threshold"]), f"{where}.ai_threshold", 0, 1)
        out["subgroups"].append(clean)
    notes = plan.get("notes", "")
    if not isinstance(notes, str) or len(notes) > 10_000:
        raise PlanError("notes must be text of at most 10,000 characters.", field="notes")
    out["notes"] = notes
    return out


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
