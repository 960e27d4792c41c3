"""Runs a frozen analysis plan on a coded snapshot (arms "X"/"Y"): every endpoint, the flow, multiplicity. No Django.

The arm column of every table holds the run's codes, never the real names; the effect of each
analysis is arm X − arm Y (or X / Y), and the mapping is applied by whoever shows the results, once
the trial is unblinded. Each analysis is computed by stats.methods on columns built here by the
simple, documented rules below, so that a statistician can rebuild every number from the exported
CSV files:

- radpeer uses radpeer_score (RADPEER 1 → 5 … 3b → 1, higher is better).
- quality / radpeer, paired: per case and arm the mean of the expert scores (all readers of that
  arm), cases scored in both arms; compare_paired(X means, Y means).
- quality / radpeer, lmm: one row per expert score, fit_lmm(score ~ arm + random terms).
- quality / radpeer, clmm: one row per expert score, fit_clmm(score ~ arm + (1|case)).
- reading time, lmm: one row per submitted read with active seconds > 0, fit_lmm(log seconds).
- reading time, paired: per case and arm the geometric mean of those reads, cases read in both
  arms; compare_paired(log = True).
- preference: one row per vote; analyse_preference with X as the treatment arm.
- detection: the reader's calls in the final report joined with the reference standard.
- AI AUC: the model's finding score per case joined with the reference standard.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from . import dataset
from .methods.agreement import analyse_agreement, fleiss_kappa, ratings_matrix
from .methods.clmm import fit_clmm
from .methods.detection import analyse_detection
from .methods.lmm import fit_lmm, grouping_codes
from .methods.mrmc import obuchowski_rockette
from .methods.multiplicity import adjust_pvalues
from .methods.paired import compare_paired
from .methods.preference import analyse_preference
from .methods.roc import roc_auc
from .plan import ENDPOINTS, TEST_LABELS, analyses_of

SCHEMA = 1
Progress = Callable[[int, str], None]


class NotEstimable(Exception):
    """The data cannot support this analysis; the message says why, in words."""


# ----------------------------------------------------------------------------------------- helpers


def clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python, tuples → lists (the methods' keys are neutral already)."""
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def usable_terms(data: Mapping[str, Any], terms: list[str], n: int) -> tuple[list[str], list[str]]:
    """The random terms the data can identify, and a note for each one left out (and why)."""
    kept, notes, partitions = [], [], []
    for term in terms:
        try:
            codes, m = grouping_codes(data, term, n)
        except (KeyError, ValueError) as exc:
            notes.append(f"{term}: left out ({exc}).")
            continue
        if m < 2:
            notes.append(f"{term}: left out (only one level).")
            continue
        if m >= n:
            notes.append(f"{term}: left out ({m} levels for {n} rows: one row per level, not identifiable).")
            continue
        same = next((t for t, p in partitions if np.array_equal(p, codes)), None)
        if same is not None:
            notes.append(f"{term}: left out (the same grouping as {same} in this design).")
            continue
        partitions.append((term, codes))
        kept.append(term)
    return kept, notes


def _summary(measure: str, scale: str, estimate, low, high, pvalue=None, **extra) -> dict[str, Any]:
    return {"measure": measure, "scale": scale, "estimate": estimate, "low": low, "high": high,
            "pvalue": pvalue, **extra}


class _Data:
    """The coded snapshot as the analyses need it: rows by entity, case facts, subgroup filters."""

    def __init__(self, view: Mapping[str, Any], *, treatment: str, reference: str, ai_threshold: float):
        self.t, self.r = treatment, reference
        self.cases = dataset.view_records(view, "cases")
        self.site_of = {c["case"]: c["site"] for c in self.cases}
        self.reads = dataset.view_records(view, "reads")
        self.reports = dataset.view_records(view, "reports")
        self.calls = dataset.view_records(view, "reader_calls")
        self.quality = dataset.view_records(view, "quality_scores")
        self.preferences = dataset.view_records(view, "preferences")
        self.reference = dataset.view_records(view, "reference_standard")
        self.ai = dataset.view_records(view, "ai_scores")
        self.allocations = dataset.view_records(view, "allocations")
        self.truth = {(r["case"], r["finding"]): int(r["truth"]) for r in self.reference if r["truth"] is not None}
        self.ai_threshold = ai_threshold

    def timed_reads(self, cases: set[str] | None = None) -> list[dict]:
        return [r for r in self.reads if r["status"] == "submitted" and (_finite(r["active_seconds"]) or 0) > 0
                and r["arm"] in (self.t, self.r) and (cases is None or r["case"] in cases)]

    def scores(self, field: str, cases: set[str] | None = None) -> list[dict]:
        return [q for q in self.quality if q[field] is not None and q["arm"] in (self.t, self.r)
                and (cases is None or q["case"] in cases)]

    def votes(self, cases: set[str] | None = None) -> list[dict]:
        return [v for v in self.preferences if v["preferred"] in (self.t, self.r, "none")
                and (cases is None or v["case"] in cases)]

    def subgroup_cases(self, sub: Mapping[str, Any]) -> set[str]:
        if sub["by"] == "reference":
            if not self.reference:
                raise NotEstimable("there is no reference standard yet")
            positives = Counter(r["case"] for r in self.reference if r["truth"] == 1)
        else:
            if not self.ai:
                raise NotEstimable("there are no AI finding scores")
            threshold = sub.get("ai_threshold", self.ai_threshold)
            positives = Counter(r["case"] for r in self.ai if r["score"] is not None and r["score"] >= threshold)
        return {c for c, n in positives.items() if n >= sub["min_findings"]}


# ------------------------------------------------------------------------------------- endpoints


def _score_paired(d: _Data, field: str, level: float, cases=None) -> dict:
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for q in d.scores(field, cases):
        by[(q["case"], q["arm"])].append(float(q[field]))
    both = sorted(c for c in {c for c, _ in by} if (c, d.t) in by and (c, d.r) in by)
    if len(both) < 2:
        raise NotEstimable(f"fewer than two cases have {field} scores in both arms")
    x = [float(np.mean(by[(c, d.t)])) for c in both]
    y = [float(np.mean(by[(c, d.r)])) for c in both]
    res = compare_paired(x, y, confidence_level=level)
    return {"n": {"cases": len(both)}, "result": res.to_dict(),
            "summary": _summary("mean difference X − Y (points)", "difference", res.t.mean_difference,
                                res.t.low, res.t.high, res.t.pvalue, df=res.t.df,
                                wilcoxon_pvalue=res.wilcoxon.pvalue, mean_x=res.mean_x, mean_y=res.mean_y),
            "pvalues": [{"name": "", "pvalue": res.t.pvalue}]}


def _model_columns(d: _Data, rows: list[dict], value: str, *, log: bool = False) -> dict[str, Any]:
    return {
        "y": np.array([float(r[value]) for r in rows]),
        "arm": np.array([r["arm"] for r in rows]),
        "case": np.array([r["case"] for r in rows]),
        "reader": np.array([r["reader"] for r in rows]),
        "expert": np.array([r.get("expert") or "" for r in rows]),
        "site": np.array([d.site_of.get(r["case"], "") for r in rows]),
    }


def _lmm(d: _Data, rows: list[dict], value: str, terms: list[str], level: float, *, log: bool) -> dict:
    if len(rows) < 4 or len({r["arm"] for r in rows}) < 2:
        raise NotEstimable("too few rows in one of the arms")
    data = _model_columns(d, rows, value)
    kept, notes = usable_terms(data, terms, len(rows))
    if not kept:
        raise NotEstimable("no random-effect term is identifiable: " + " ".join(notes))
    try:
        res = fit_lmm(data, outcome="y", random=kept, arm="arm", log=log, treatment=d.t, reference=d.r)
    except (ValueError, RuntimeError) as exc:
        raise NotEstimable(f"the mixed model could not be fitted: {exc}") from exc
    try:
        out = res.to_dict(level)
    except OverflowError as exc:  # a t quantile on a tiny df: the ratio's interval does not fit in a float
        raise NotEstimable(f"the confidence interval is unbounded (Satterthwaite df = {res.df:.3g}): too few "
                           "readers or cases for this model") from exc
    if log:
        summary = _summary("ratio of geometric means X / Y", "ratio", out["ratio"],
                           *out["ratio_confidence_interval"], res.pvalue, df=res.df,
                           percent_reduction=out["percent_reduction"],
                           percent_reduction_ci=out["percent_reduction_confidence_interval"])
    else:
        summary = _summary("difference X − Y (points, model)", "difference", res.estimate,
                           *out["confidence_interval"], res.pvalue, df=res.df)
    if not res.converged:
        notes.append("the optimizer reported no convergence: read with care")
    return {"n": {"rows": res.n_obs, **{f"levels_{k}": v for k, v in res.n_groups.items()}},
            "random_terms": kept, "notes": notes, "result": out, "summary": summary,
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _clmm(d: _Data, rows: list[dict], value: str, level: float) -> dict:
    if len(rows) < 4 or len({r["arm"] for r in rows}) < 2:
        raise NotEstimable("too few rows in one of the arms")
    data = _model_columns(d, rows, value)
    data["y"] = data["y"].astype(int)
    try:
        res = fit_clmm(data, outcome="y", group="case", arm="arm", treatment=d.t, reference=d.r)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise NotEstimable(f"the ordinal model could not be fitted: {exc}") from exc
    out = res.to_dict(level)
    notes = [] if res.converged else ["the optimizer reported no convergence: read with care"]
    return {"n": {"rows": res.n_obs, "levels_case": res.n_groups}, "notes": notes, "result": out,
            "summary": _summary("odds ratio of a higher score, X vs Y", "odds_ratio", out["odds_ratio"],
                                *out["odds_ratio_confidence_interval"], res.pvalue),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _time_paired(d: _Data, level: float, cases=None) -> dict:
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in d.timed_reads(cases):
        by[(r["case"], r["arm"])].append(float(r["active_seconds"]))
    both = sorted(c for c in {c for c, _ in by} if (c, d.t) in by and (c, d.r) in by)
    if len(both) < 2:
        raise NotEstimable("fewer than two cases have a timed read in both arms")
    x = [_geomean(by[(c, d.t)]) for c in both]
    y = [_geomean(by[(c, d.r)]) for c in both]
    res = compare_paired(x, y, log=True, confidence_level=level)
    t = res.t
    return {"n": {"cases": len(both)}, "result": res.to_dict(),
            "summary": _summary("ratio of geometric means X / Y (paired)", "ratio", t.ratio, t.ratio_low,
                                t.ratio_high, t.pvalue, df=t.df, percent_reduction=100 * (1 - t.ratio),
                                percent_reduction_ci=[100 * (1 - t.ratio_high), 100 * (1 - t.ratio_low)],
                                wilcoxon_pvalue=res.wilcoxon.pvalue),
            "pvalues": [{"name": "", "pvalue": t.pvalue}]}


def _preference(d: _Data, level: float, cases=None) -> dict:
    votes = d.votes(cases)
    if not votes:
        raise NotEstimable("no preference votes")
    sides = None
    if all(v["left_arm"] in (d.t, d.r) for v in votes):
        sides = ["left" if v["left_arm"] == d.t else "right" for v in votes]
    res = analyse_preference(case=[v["case"] for v in votes], expert=[v["expert"] for v in votes],
                             choice=[v["preferred"] for v in votes], treatment=d.t, reference=d.r, side=sides,
                             confidence_level=level)
    return {"n": {"cases": res.n_cases, "votes": len(votes)}, "result": res.to_dict(),
            "summary": _summary("share of cases whose experts' majority preferred X (all cases)", "share",
                                res.share, res.low, res.high, res.pvalue, wins=res.wins, losses=res.losses,
                                ties=res.ties, n_cases=res.n_cases),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _detection_rows(d: _Data) -> list[dict]:
    return [{**c, "truth": d.truth[(c["case"], c["finding"])]} for c in d.calls
            if (c["case"], c["finding"]) in d.truth and c["arm"] in (d.t, d.r) and c["call"] is not None]


def _detection(d: _Data, level: float) -> dict:
    rows = _detection_rows(d)
    if not rows:
        raise NotEstimable("no reader calls with a reference standard")
    res = analyse_detection(case=[r["case"] for r in rows], arm=[r["arm"] for r in rows],
                            reader=[r["reader"] for r in rows], finding=[r["finding"] for r in rows],
                            truth=[r["truth"] for r in rows], call=[r["call"] for r in rows],
                            arms=(d.t, d.r), confidence_level=level)
    pvalues = []
    for f in res.findings:
        for label, test in (("sensitivity", f.mcnemar_sensitivity), ("specificity", f.mcnemar_specificity)):
            if test is not None and _finite(test.pvalue) is not None:
                pvalues.append({"name": f"{f.finding}, {label}", "pvalue": test.pvalue})
    return {"n": {"rows": len(rows), "cases": len({r["case"] for r in rows})}, "result": res.to_dict(),
            "summary": None, "pvalues": pvalues}


def _mrmc(d: _Data, level: float) -> dict:
    rows = _detection_rows(d)
    if not rows:
        raise NotEstimable("no reader calls with a reference standard")
    per_finding, pvalues = {}, []
    for finding in sorted({r["finding"] for r in rows}):
        sub = [r for r in rows if r["finding"] == finding]
        per_finding[finding] = {}
        for fom in ("sensitivity", "specificity"):
            try:
                res = obuchowski_rockette(reader=[r["reader"] for r in sub], case=[r["case"] for r in sub],
                                          modality=[r["arm"] for r in sub], truth=[r["truth"] for r in sub],
                                          rating=[r["call"] for r in sub], fom=fom, threshold=1,
                                          modalities=(d.t, d.r), confidence_level=level)
            except (ValueError, ZeroDivisionError) as exc:
                per_finding[finding][fom] = {"status": "not_estimable", "reason": str(exc)}
                continue
            per_finding[finding][fom] = {"status": "ok", "result": res.to_dict(), "difference": res.difference,
                                         "pvalue": res.pvalue}
            if _finite(res.pvalue) is not None:
                pvalues.append({"name": f"{finding}, {fom}", "pvalue": res.pvalue})
    if not any(v.get("status") == "ok" for f in per_finding.values() for v in f.values()):
        reasons = {v["reason"] for f in per_finding.values() for v in f.values()}
        raise NotEstimable("; ".join(sorted(reasons))[:500])
    return {"n": {"rows": len(rows)}, "result": {"findings": per_finding}, "summary": None, "pvalues": pvalues}


def _ai_auc(d: _Data, level: float) -> dict:
    if not d.ai:
        raise NotEstimable("no AI finding scores")
    if not d.truth:
        raise NotEstimable("there is no reference standard yet")
    per_finding = {}
    for finding in sorted({r["finding"] for r in d.ai}):
        pairs = [(d.truth[(r["case"], finding)], float(r["score"])) for r in d.ai
                 if r["finding"] == finding and r["score"] is not None and (r["case"], finding) in d.truth]
        try:
            res = roc_auc([t for t, _ in pairs], [s for _, s in pairs], confidence_level=level)
        except ValueError as exc:
            per_finding[finding] = {"status": "not_estimable", "reason": str(exc), "n": len(pairs)}
            continue
        per_finding[finding] = {"status": "ok", "result": res.to_dict(), "n": len(pairs)}
    if not any(v["status"] == "ok" for v in per_finding.values()):
        raise NotEstimable("no finding has two diseased and two healthy cases with an AI score")
    return {"n": {"findings": len(per_finding)}, "result": {"findings": per_finding}, "summary": None,
            "pvalues": []}


def _compute(d: _Data, plan: Mapping[str, Any], endpoint: str, test: str, cases=None) -> dict:
    level = plan["confidence_level"]
    terms = plan.get("random_effects", {}).get(endpoint)
    if endpoint in ("quality", "radpeer"):
        field = "score" if endpoint == "quality" else "radpeer_score"
        if test == "paired":
            return _score_paired(d, field, level, cases)
        if test == "lmm":
            return _lmm(d, d.scores(field, cases), field, terms or ["case", "reader", "expert"], level, log=False)
        if test == "clmm":
            return _clmm(d, d.scores(field, cases), field, level)
    if endpoint == "reading_time":
        if test == "lmm":
            return _lmm(d, d.timed_reads(cases), "active_seconds", terms or ["case", "reader"], level, log=True)
        if test == "paired":
            return _time_paired(d, level, cases)
    if endpoint == "preference":
        return _preference(d, level, cases)
    if endpoint == "detection":
        return _mrmc(d, level) if test == "mrmc" else _detection(d, level)
    if endpoint == "ai_auc":
        return _ai_auc(d, level)
    raise NotEstimable(f"no analysis for {endpoint} by {test}")


def _main_test(plan: Mapping[str, Any], endpoint: str) -> str:
    for entry in [plan["primary"], *plan.get("secondary", []), *plan.get("exploratory", []),
                  *plan.get("sensitivity", [])]:
        if entry["endpoint"] == endpoint:
            return entry["test"]
    return ENDPOINTS[endpoint]["tests"][0]


def _run_one(d: _Data, plan, *, key: str, endpoint: str, test: str, role: str, cases=None, subgroup=None) -> dict:
    entry = {"key": key, "endpoint": endpoint, "test": test, "role": role,
             "label": ENDPOINTS[endpoint]["label"], "test_label": TEST_LABELS[test]}
    if subgroup is not None:
        entry["subgroup"] = subgroup
    try:
        entry.update(status="ok", **_compute(d, plan, endpoint, test, cases))
    except NotEstimable as exc:
        entry.update(status="not_estimable", reason=str(exc), summary=None, pvalues=[], result=None)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        entry.update(status="not_estimable", reason=f"the method refused the data: {exc}", summary=None,
                     pvalues=[], result=None)
    return entry


# --------------------------------------------------------------------------- flow and descriptives


def _describe(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, float)
    q1, med, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    iqr = q3 - q1
    inside = a[(a >= q1 - 1.5 * iqr) & (a <= q3 + 1.5 * iqr)]
    out = {"n": int(a.size), "mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else None,
           "median": med, "q1": q1, "q3": q3, "min": float(a.min()), "max": float(a.max()),
           "whisker_low": float(inside.min()), "whisker_high": float(inside.max())}
    if (a > 0).all():
        out["geometric_mean"] = _geomean(list(a))
    return out


def descriptives(d: _Data) -> dict[str, Any]:
    out: dict[str, Any] = {"reading_time": {}, "quality": {}, "radpeer": {}}
    for arm in (d.t, d.r):
        out["reading_time"][arm] = _describe([float(r["active_seconds"]) for r in d.timed_reads() if r["arm"] == arm])
        for field, name in (("score", "quality"), ("radpeer_score", "radpeer")):
            values = [int(q[field]) for q in d.scores(field) if q["arm"] == arm]
            desc = _describe([float(v) for v in values])
            desc["counts"] = {str(k): values.count(k) for k in range(1, 6)}
            out[name][arm] = desc
    return out


def flow(d: _Data, analyses: Mapping[str, dict], plan: Mapping[str, Any]) -> dict[str, Any]:
    """CONSORT-style counts: enrolled, allocated, read per arm, scored, analysed, excluded with reasons."""
    arms = (d.t, d.r)
    cases = {c["case"] for c in d.cases}
    reads_by_arm = {a: [r for r in d.reads if r["arm"] == a] for a in arms}
    submitted = {a: {r["case"] for r in reads_by_arm[a] if r["status"] == "submitted"} for a in arms}
    routed = {a: {r["case"] for r in reads_by_arm[a]} for a in arms}
    scored = {a: {q["case"] for q in d.quality if q["arm"] == a and q["score"] is not None} for a in arms}
    voted = {v["case"] for v in d.preferences}
    paired_design = bool(routed[d.t] & routed[d.r])
    if paired_design:
        read_complete = submitted[d.t] & submitted[d.r]
        scored_complete = read_complete & scored[d.t] & scored[d.r]
    else:
        read_complete = submitted[d.t] | submitted[d.r]
        scored_complete = {c for c in read_complete if c in scored[d.t] | scored[d.r]}
    excluded = []

    def exclude(stage: str, reason: str, n: int) -> None:
        if n:
            excluded.append({"stage": stage, "reason": reason, "n": n})

    exclude("reading", "not routed to a reader", len(cases - routed[d.t] - routed[d.r]))
    if paired_design:
        exclude("reading", "a read not submitted in one or both arms", len((routed[d.t] | routed[d.r]) - read_complete))
        exclude("scoring", "read in both arms but a report not scored", len(read_complete - scored_complete))
    else:
        exclude("reading", "read not submitted", len((routed[d.t] | routed[d.r]) - read_complete))
        exclude("scoring", "report not scored", len(read_complete - scored_complete))
    zero = [r for r in d.reads if r["status"] == "submitted" and not (_finite(r["active_seconds"]) or 0) > 0]
    exclude("reading time", "submitted read with no measured active time (reads, not cases)", len(zero))
    exclude("preference", "read in both arms but no preference vote", len(read_complete - voted) if paired_design else 0)
    if d.reference:
        exclude("detection", "no reference standard", len(read_complete - {c for c, _ in d.truth}))
    primary = analyses.get("primary")
    analysed = None
    if primary and primary["status"] == "ok":
        n = primary["n"]
        analysed = n.get("cases", n.get("levels_case", n.get("rows")))
    readers = {a: sorted({r["reader"] for r in reads_by_arm[a]}) for a in arms}
    allocated = Counter(a["arm"] for a in d.allocations if a["unit_type"] == "reader")
    return {
        "enrolled": len(cases),
        "arms": {a: {"readers_allocated": allocated.get(a, 0), "readers_reading": len(readers[a]),
                     "reads_routed": len(reads_by_arm[a]),
                     "reads_submitted": sum(r["status"] == "submitted" for r in reads_by_arm[a]),
                     "cases_read": len(submitted[a]), "cases_scored": len(scored[a] & submitted[a])}
                 for a in arms},
        "paired_design": paired_design,
        "cases_read_complete": len(read_complete),
        "cases_scored_complete": len(scored_complete),
        "cases_with_preference": len(voted & read_complete) if paired_design else len(voted),
        "analysed_primary": analysed,
        "primary_unit": "cases" if primary and "cases" in (primary.get("n") or {}) else "rows",
        "excluded": excluded,
    }


def _matrix_by_slot(items: dict[Any, dict[str, float]]) -> tuple[list, list, list, bool, list[str]]:
    """Long rows (item, rater, value) for an agreement analysis: the experts themselves if every item has
    all of them, else each item's experts in sorted order as rater positions."""
    raters = sorted({e for votes in items.values() for e in votes})
    notes = []
    if all(len(v) == len(raters) for v in items.values()):
        rows = [(i, e, v) for i, votes in items.items() for e, v in votes.items()]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], True, notes
    k = Counter(len(v) for v in items.values()).most_common(1)[0][0]
    kept = {i: v for i, v in items.items() if len(v) == k}
    notes.append(f"experts differ between items: raters are each item's 1st…{k}th expert "
                 f"({len(items) - len(kept)} items with another number of scores left out)")
    rows = [(i, f"slot{j + 1}", votes[e]) for i, votes in kept.items() for j, e in enumerate(sorted(votes))]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], False, notes


def agreement(d: _Data, level: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, name in (("score", "quality"), ("radpeer_score", "radpeer")):
        items: dict[Any, dict[str, float]] = defaultdict(dict)
        for q in d.scores(field):
            items[(q["case"], q["arm"], q["reader"])][q["expert"]] = float(q[field])
        if not items:
            out[name] = {"status": "not_estimable", "reason": "no scores"}
            continue
        item, rater, value, same_raters, notes = _matrix_by_slot(items)
        try:
            res = analyse_agreement(item=["|".join(i) for i in item], rater=rater, score=value, confidence_level=level)
        except ValueError as exc:
            out[name] = {"status": "not_estimable", "reason": str(exc)}
            continue
        out[name] = {"status": "ok", "same_raters": same_raters, "notes": notes, "result": res.to_dict()}
    votes: dict[str, dict[str, float]] = defaultdict(dict)
    code = {d.t: 1.0, d.r: 2.0, "none": 0.0}
    for v in d.votes():
        votes[v["case"]][v["expert"]] = code[v["preferred"]]
    if votes:
        item, rater, value, same_raters, notes = _matrix_by_slot(votes)
        try:
            _, _, matrix = ratings_matrix(item, rater, value)
            res = fleiss_kappa(matrix)
            out["preference"] = {"status": "ok", "same_raters": same_raters, "notes": notes, "result": res.to_dict()}
        except ValueError as exc:
            out["preference"] = {"status": "not_estimable", "reason": str(exc)}
    else:
        out["preference"] = {"status": "not_estimable", "reason": "no preference votes"}
    return out


def automation_bias(d: _Data) -> dict[str, Any]:
    """How much of the AI draft the final reports kept. Exists in one arm only: withheld until unblinding."""
    finals = [r for r in d.reports if r["final"] == 1 and r["draft_kept_share"] is not None]
    if not finals:
        return {"status": "not_estimable", "reason": "no report was written from an AI draft"}
    kept = [float(r["draft_kept_share"]) for r in finals]
    dist = [float(r["draft_edit_distance"]) for r in finals if r["draft_edit_distance"] is not None]
    per_reader: dict[str, list[float]] = defaultdict(list)
    for r in finals:
        per_reader[r["reader"]].append(float(r["draft_kept_share"]))
    out: dict[str, Any] = {
        "status": "ok", "arm": finals[0]["arm"], "reports": len(finals),
        "kept_share": _describe(kept),
        "edit_distance": _describe(dist),
        "unchanged": sum(k >= 0.999999 for k in kept),
        "kept_at_least_90": sum(k >= 0.9 for k in kept),
        "per_reader": {r: {"reports": len(v), "mean_kept_share": float(np.mean(v))}
                       for r, v in sorted(per_reader.items())},
    }
    quality = defaultdict(list)
    for q in d.quality:
        if q["score"] is not None:
            quality[(q["case"], q["arm"], q["reader"])].append(float(q["score"]))
    pairs = [(float(r["draft_kept_share"]), float(np.mean(quality[(r["case"], r["arm"], r["reader"])])))
             for r in finals if quality.get((r["case"], r["arm"], r["reader"]))]
    if len(pairs) >= 3 and len({p[0] for p in pairs}) > 1 and len({p[1] for p in pairs}) > 1:
        rho, p = sps.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        out["kept_share_vs_quality"] = {"spearman_rho": float(rho), "pvalue": float(p), "n": len(pairs)}
    return out


# ----------------------------------------------------------------------------------------- the run


def _family(analyses: list[dict], roles: tuple[str, ...], method: str, alpha: float) -> dict[str, Any] | None:
    names, pvalues, owners = [], [], []
    for a in analyses:
        if a["role"] not in roles or a["status"] != "ok":
            continue
        for p in a["pvalues"]:
            if _finite(p["pvalue"]) is None:
                continue
            names.append(a["key"] + (f": {p['name']}" if p["name"] else ""))
            pvalues.append(float(p["pvalue"]))
            owners.append((a, p))
    if not pvalues:
        return None
    if method == "none":
        adjusted, rejected = pvalues, [p <= alpha for p in pvalues]
        result = {"method": "none", "alpha": alpha, "names": names, "pvalues": pvalues, "adjusted": adjusted,
                  "rejected": rejected}
    else:
        res = adjust_pvalues(pvalues, method=method, alpha=alpha, names=names)
        result = res.to_dict()
        adjusted, rejected = res.adjusted, res.rejected
    for (a, p), adj, rej in zip(owners, adjusted, rejected):
        p["adjusted"], p["rejected"] = adj, rej
    return result


def run_analysis(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str, findings: list[str],
                 treatment: str = "X", reference: str = "Y", progress: Progress | None = None) -> dict[str, Any]:
    """Every analysis of `plan` on the coded snapshot `view`; JSON-ready results in X/Y terms."""
    report = progress or (lambda pct, stage: None)
    d = _Data(view, treatment=treatment, reference=reference, ai_threshold=plan.get("ai_threshold", 0.5))
    level, alpha = plan["confidence_level"], plan["alpha"]
    planned = analyses_of(dict(plan))
    subgroup_jobs = []
    for sub in plan.get("subgroups", []):
        for endpoint in sub["endpoints"]:
            subgroup_jobs.append((sub, endpoint, _main_test(plan, endpoint)))
    total = len(planned) + len(subgroup_jobs) + 2
    done = 0
    analyses: list[dict] = []
    for job in planned:
        report(int(100 * done / total), f"{ENDPOINTS[job['endpoint']]['label']}: {job['test']}")
        analyses.append(_run_one(d, plan, key=f"{job['endpoint']}.{job['test']}", endpoint=job["endpoint"],
                                 test=job["test"], role=job["role"]))
        done += 1
    subgroups = []
    for sub in plan.get("subgroups", []):
        try:
            members = d.subgroup_cases(sub)
            subgroups.append({**sub, "status": "ok", "cases": len(members)})
        except NotEstimable as exc:
            members = None
            subgroups.append({**sub, "status": "not_estimable", "reason": str(exc), "cases": 0})
        for endpoint in sub["endpoints"]:
            test = _main_test(plan, endpoint)
            report(int(100 * done / total), f"subgroup {sub['name']}: {endpoint}")
            key = f"subgroup.{sub['name']}.{endpoint}.{test}"
            if members is None:
                analyses.append({"key": key, "endpoint": endpoint, "test": test, "role": "subgroup",
                                 "subgroup": sub["name"], "label": ENDPOINTS[endpoint]["label"],
                                 "test_label": TEST_LABELS[test], "status": "not_estimable",
                                 "reason": subgroups[-1]["reason"], "summary": None, "pvalues": [], "result": None})
            else:
                analyses.append(_run_one(d, plan, key=key, endpoint=endpoint, test=test, role="subgroup",
                                         cases=members, subgroup=sub["name"]))
            done += 1
    report(int(100 * done / total), "agreement and descriptives")
    multiplicity = {
        "secondary": _family(analyses, ("secondary",), plan["secondary_adjustment"], alpha),
        "exploratory": _family(analyses, ("exploratory", "subgroup"), plan["exploratory_adjustment"], alpha),
    }
    primary = analyses[0]
    if primary["status"] == "ok":
        for p in primary["pvalues"]:
            p["adjusted"], p["rejected"] = p["pvalue"], bool(_finite(p["pvalue"]) is not None and p["pvalue"] <= alpha)
    by_role = {"primary": primary}
    results = {
        "schema": SCHEMA,
        "arms": {"treatment": treatment, "reference": reference},
        "design": design,
        "findings": list(findings),
        "alpha": alpha,
        "confidence_level": level,
        "analyses": {a["key"]: a for a in analyses},
        "order": [a["key"] for a in analyses],
        "subgroups": subgroups,
        "multiplicity": multiplicity,
        "descriptives": descriptives(d),
        "agreement": agreement(d, level),
        "automation_bias": automation_bias(d),
        "flow": flow(d, by_role, plan),
    }
    report(100, "done")
    return clean(results)


# Sections of the results that would reveal which arm is which; shown only after unblinding.
WITHHELD_SECTIONS = ("automation_bias",)


def without_withheld(results: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(results)
    for key in WITHHELD_SECTIONS:
        if key in out:
            out[key] = {"status": "withheld", "reason": "shown after unblinding: it exists in one arm only and "
                                                         "would reveal which arm is which"}
    return out


__all__ = ["run_analysis", "without_withheld", "clean", "usable_terms", "NotEstimable"]
