"""Interim looks computed on a snapshot view (no Django): information, blinded sample-size re-estimation, safety,
efficacy against a spending boundary, and the final look's nominal level.

- Information fraction: cases whose scoring is complete / planned cases. A case is complete when it has
  reads, every one of them is submitted, and every one has quality scores from at least the trial's
  experts per item (distinct experts; `experts_per_item`).
- Blinded sample-size re-estimation (stats.methods.group_sequential, Kieser & Friede 2003): the quality
  LMM of the plan's random terms fitted to the pooled scores with no arm term (the view it gets has no
  arm at all; the report term is the read), the reader variance adjusted for the planned effect, then
  quality power and the readers needed (stats.methods.power) with the plan's cases, readers and experts.
  Its result holds pooled SDs and powers only: nothing in it depends on which reader is in which arm.
- Safety (stats.methods.safety): missed critical findings per arm, finding and reader, from the readers'
  calls in their final reports against the reference standard decided so far. Real arm names: for the
  data-monitoring committee only (stats.selectors).
- Efficacy: the plan's primary analysis (stats.analysis.primary_analysis) on the data so far, its
  two-sided p-value judged with every earlier efficacy look at their observed fractions by
  group_sequential.monitor (Lan–DeMets, the plan's spending type). A look whose primary could not be
  estimated counts as p = 1 (it cannot cross), as a planned test that fails does in the final analysis.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import dataset
from .analysis import clean, primary_analysis, usable_terms
from .methods.group_sequential import BlindedComponents, adjusted_for_planned_effect, boundaries, monitor
from .methods.lmm import fit_pooled_lmm
from .methods.power import POWER_DESIGNS, VarianceComponents, quality_power
from .methods.safety import missed_critical_findings

KIND_LABELS = {
    "blinded_ssr": "Blinded sample-size re-estimation",
    "safety": "Safety: missed critical findings",
    "efficacy": "Efficacy: primary analysis against the spending boundary",
}
# Which arm is the treatment in what the committee sees (safety difference, efficacy effect X − Y).
TREATMENT, CONTROL = "assisted", "standard"
POOLED_TERMS = ("case", "reader", "expert", "report")


class LookNotPossible(ValueError):
    """The data cannot give this look yet; the message says why."""


def information(view: Mapping[str, Any], *, experts_per_item: int, planned_cases: int) -> dict[str, Any]:
    """{cases_complete, planned_cases, fraction}: fraction = complete cases / planned cases (may exceed 1)."""
    reads = dataset.view_records(view, "reads")
    experts: dict[Any, set[str]] = defaultdict(set)
    for q in dataset.view_records(view, "quality_scores"):
        if q.get("score") is not None:
            experts[q["read"]].add(q["expert"])
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in reads:
        by_case[r["case"]].append(r)
    need = max(1, int(experts_per_item))
    complete = sorted(case for case, rs in by_case.items()
                      if all(r["status"] == "submitted" and len(experts[r["read"]]) >= need for r in rs))
    return {"cases_complete": len(complete), "cases_enrolled": len(dataset.view_records(view, "cases")),
            "planned_cases": int(planned_cases), "experts_per_item": need,
            "fraction": len(complete) / int(planned_cases)}


# ---------------------------------------------------------------------------- blinded sample-size re-estimation


def _sds(components: Mapping[str, float]) -> dict[str, float]:
    return {k: float(np.sqrt(max(v, 0.0))) for k, v in components.items()}


def blinded_ssr(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str) -> dict[str, Any]:
    """Re-estimated quality power and readers needed from the pooled variance components (module docstring)."""
    power = plan.get("power")
    if not power:
        raise LookNotPossible("The plan has no power section: the planned effect and design are not stated.")
    if design not in POWER_DESIGNS:
        return {"status": "not_available", "reason": "the analytic power covers the paired-parallel design only; "
                "simulate other designs with stats.methods.simulation"}
    site_of = {c["case"]: c["site"] for c in dataset.view_records(view, "cases")}
    period_of = {r["read"]: r.get("period") for r in dataset.view_records(view, "reads")}
    rows = [q for q in dataset.view_records(view, "quality_scores") if q.get("score") is not None]
    if len(rows) < 8:
        raise LookNotPossible(f"{len(rows)} quality scores so far: too few to estimate variance components.")
    data = {
        "y": np.array([float(q["score"]) for q in rows]),
        "case": np.array([str(q["case"]) for q in rows]),
        "reader": np.array([str(q["reader"]) for q in rows]),
        "expert": np.array([str(q["expert"]) for q in rows]),
        # the report: one read's report (case:arm in the paired-parallel design) named without its arm
        "report": np.array([str(q["read"]) for q in rows]),
        "site": np.array([str(site_of.get(q["case"], "")) for q in rows]),
        "period": np.array([str(period_of.get(q["read"]) or 1) for q in rows]),
    }
    n = len(rows)
    readers = len(set(data["reader"].tolist()))
    if readers < 4:
        raise LookNotPossible(f"{readers} readers have scored reports so far: at least 4 (two per arm) are needed "
                              "to estimate the reader variance.")
    terms, notes = usable_terms(data, list(POOLED_TERMS), n)
    covariates = []
    for cov in plan.get("covariates", {}).get("quality", []):
        if len(set(data[cov].tolist())) > 1:
            covariates.append(cov)
        else:
            notes.append(f"{cov}: left out (one value in the data so far).")
    try:
        fit = fit_pooled_lmm(data, outcome="y", random=terms, covariates=covariates)
    except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise LookNotPossible(f"the pooled mixed model could not be fitted: {exc}") from exc
    vc = fit.variance_components
    pooled = BlindedComponents(case=vc.get("case", 0.0), reader=vc.get("reader", 0.0), report=vc.get("report", 0.0),
                               expert=vc.get("expert", 0.0), residual=fit.residual_variance)
    effect = float(power["quality"]["effect"])
    observed_per_arm = readers // 2
    adjusted = adjusted_for_planned_effect(pooled, planned_effect=effect, readers_per_arm=observed_per_arm)
    design_n = {"n_cases": int(power["n_cases"]), "readers_per_arm": int(power["readers_per_arm"]),
                "n_experts": int(power["n_experts"]), "alpha": float(power["alpha"])}
    q = power["quality"]
    planned_vc = VarianceComponents.from_sds(reader=q["reader_sd"], report=q["report_sd"], residual=q["residual_sd"])
    re_vc = VarianceComponents(reader=adjusted.reader, report=adjusted.report, residual=adjusted.residual)

    def summary(components: VarianceComponents) -> dict[str, Any]:
        try:
            res = quality_power(n_cases=design_n["n_cases"], readers_per_arm=design_n["readers_per_arm"],
                                n_experts=design_n["n_experts"], components=components, effect=effect,
                                alpha=design_n["alpha"])
        except ValueError as exc:
            return {"status": "not_computable", "reason": str(exc)}
        return {"status": "ok", "power": res.power, "se": res.se, "df": res.df,
                "readers_for_80": res.readers_for_80, "readers_for_90": res.readers_for_90}

    planned, re_estimated = summary(planned_vc), summary(re_vc)
    if not fit.converged:
        notes.append("the optimizer reported no convergence: read with care")
    if re_estimated.get("status") == "ok":
        need = re_estimated["readers_for_80"]
        have = 2 * design_n["readers_per_arm"]
        if need is None:
            advice = (f"With {design_n['n_cases']} cases no number of readers reaches 80 % power for the planned "
                      f"effect {effect:g}; the reader term bounds it.")
        elif need > have:
            advice = f"{need} readers in all ({need // 2} per arm) for 80 % power, against {have} planned."
        else:
            advice = f"The planned {have} readers keep at least 80 % power ({need} would do)."
    else:
        advice = "Power could not be recomputed: " + re_estimated.get("reason", "")
    return clean({
        "status": "ok",
        "n": {"scores": fit.n_obs, "readers": readers, "groups": fit.n_groups},
        "random_terms": terms, "covariates": covariates, "notes": notes,
        "planned_effect": effect, "design": design_n, "readers_per_arm_observed": observed_per_arm,
        "pooled_sd": _sds({"case": pooled.case, "reader": pooled.reader, "report": pooled.report,
                           "expert": pooled.expert, "residual": pooled.residual}),
        "adjusted_sd": _sds({"reader": adjusted.reader, "report": adjusted.report, "residual": adjusted.residual}),
        "planned_sd": {"reader": q["reader_sd"], "report": q["report_sd"], "residual": q["residual_sd"]},
        "power": {"planned": planned, "re_estimated": re_estimated},
        "advice": advice,
        "method": ("quality LMM on the pooled scores with no arm term (REML; random " + ", ".join(terms)
                   + (", fixed " + ", ".join(covariates) if covariates else "") + "); reader variance less "
                   "δ²/4 · 2k/(2k − 1) for the planned effect δ (Kieser & Friede 2003); analytic power of "
                   "stats.methods.power with the plan's cases, readers and experts. No alpha is spent."),
    })


# ---------------------------------------------------------------------------------------------------- safety


def safety(view: Mapping[str, Any], *, critical: Sequence[str], margin: float, confidence_level: float,
           findings: Sequence[str]) -> dict[str, Any]:
    """Missed critical findings per arm (real arm names: the unmasked view), finding and reader."""
    unknown = [f for f in critical if f not in findings]
    critical = [f for f in critical if f in findings]
    if not critical:
        raise LookNotPossible("None of the plan's critical findings is among the trial's findings "
                              f"({', '.join(findings)}).")
    truth = {(r["case"], r["finding"]): int(r["truth"]) for r in dataset.view_records(view, "reference_standard")
             if r["truth"] is not None}
    rows = [c for c in dataset.view_records(view, "reader_calls")
            if (c["case"], c["finding"]) in truth and c["arm"] in (TREATMENT, CONTROL)]
    res = missed_critical_findings(
        arm=[c["arm"] for c in rows], reader=[str(c["reader"]) for c in rows], finding=[c["finding"] for c in rows],
        reference=[truth[(c["case"], c["finding"])] for c in rows], call=[int(c["call"] or 0) for c in rows],
        critical=critical, treatment=TREATMENT, control=CONTROL, margin=margin, confidence_level=confidence_level)
    notes = [f"{f}: not among the trial's findings, left out" for f in unknown]
    return clean({"status": "ok", "critical_findings": list(critical), "confidence_level": confidence_level,
                  "cases_with_reference": len({case for case, _ in truth}), "calls": len(rows), "notes": notes,
                  **res.as_dict()})


# -------------------------------------------------------------------------------------------------- efficacy


def efficacy(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str, findings: Sequence[str],
             earlier: Sequence[tuple[float, float]], fraction: float) -> dict[str, Any]:
    """The primary at this look and the decision over every efficacy look so far. `earlier`: (fraction, p) of the
    earlier efficacy looks in order; `view` holds the real arm names (X = assisted)."""
    spec = plan["interim"]["efficacy"]
    alpha = float(plan["alpha"])
    coded = dataset.relabel(view, label=lambda v: {TREATMENT: "X", CONTROL: "Y"}.get(v, v), drop_withheld=False)
    primary = primary_analysis(coded, plan=plan, design=design, findings=list(findings))
    p = None
    if primary["status"] == "ok" and primary["pvalues"]:
        p = primary["pvalues"][0]["pvalue"]
    tested = 1.0 if p is None else float(p)
    fractions = [f for f, _ in earlier] + [fraction]
    pvalues = [q for _, q in earlier] + [tested]
    decisions = monitor(pvalues, fractions, alpha=alpha, spending=spec["spending"], final=False)
    crossed = len(decisions) == len(fractions) and decisions[-1].rejected
    planned = boundaries([*spec["fractions"], 1.0], alpha=alpha, spending=spec["spending"], final=True)
    this = decisions[-1].as_dict() if len(decisions) == len(fractions) else None
    decision = ("boundary crossed: the primary's p-value is below this look's nominal level" if crossed
                else "continue: the boundary is not crossed")
    return clean({"status": "ok", "arms": {"X": TREATMENT, "Y": CONTROL}, "primary": {
        "key": primary["key"], "status": primary["status"], "reason": primary.get("reason", ""),
        "summary": primary.get("summary"), "pvalue": p, "label": primary["label"], "test_label": primary["test_label"]},
        "tested_pvalue": tested, "look": this, "looks": [d.as_dict() for d in decisions], "crossed": crossed,
        "decision": decision, "spending": spec["spending"], "alpha": alpha,
        "planned_boundaries": planned.as_dict(),
        "note": ("The look's p-value is the primary's t test (Satterthwaite df) compared with the nominal level "
                 "2(1 − Φ(c)) of the z boundary c: slightly anticonservative with 15–25 df (module docstring of "
                 "stats.methods.group_sequential).")})


def final_level(fractions: Sequence[float], *, alpha: float, spending: str) -> dict[str, Any]:
    """The final analysis's nominal two-sided level after efficacy looks at `fractions` (observed, < 1): the last
    look at full information spends all α that is left."""
    b = boundaries([*fractions, 1.0], alpha=alpha, spending=spending, final=True)
    return {"nominal_p": b.nominal_p[-1], "z": b.z[-1], "fractions": list(b.fractions), "alpha": alpha,
            "spending": spending}


__all__ = ["KIND_LABELS", "LookNotPossible", "information", "blinded_ssr", "safety", "efficacy", "final_level"]
