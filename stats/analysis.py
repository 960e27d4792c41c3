"""Runs a frozen analysis plan on a coded snapshot (arms "X"/"Y"): endpoints, subgroups, flow, multiplicity. No Django.

The arm column of every table holds the run's codes, never the real names; the effect of each
analysis is arm X − arm Y (or X / Y), and the mapping is applied by whoever shows the results, once
the trial is unblinded. Each analysis is computed by stats.methods on columns built here by the
simple, documented rules below, so that a statistician can rebuild every number from the exported
CSV files. The plan is read by stats.plan.read_plan (a schema-1 plan as it was meant).

Columns of every model: the case's site (cases.site), the read's period (reads.period, by read id),
the reader, the expert; "case:arm" is the report of a paired-parallel trial. A fixed covariate of
the plan that takes one value in the data (one site, one period) is left out with a note, and so is
a random term the design cannot identify (stats.analysis.usable_terms).

- radpeer uses radpeer_score (RADPEER 1 → 5 … 3b → 1, higher is better).
- quality / radpeer, lmm (the default): one row per expert score, fit_lmm(score ~ arm + covariates,
  the plan's random terms); readers are the randomized units and carry the arm contrast.
- quality / radpeer, ordinal_glmm: the same rows and terms, fit_ordinal_glmm (cumulative logit, crossed
  intercepts, small-sample corrected t).
- quality / radpeer, paired (fixed readers, a sensitivity): per case and arm the mean of the expert
  scores, cases scored in both arms; compare_paired(X means, Y means).
- quality / radpeer, clmm (fixed readers, schema-1 plans): fit_clmm(score ~ arm + (1|case)).
- reading time, lmm (the default): one row per submitted read with active seconds > 0, fit_lmm(log
  seconds ~ arm + covariates); the difference in seconds is the arm coefficient of the same model
  on seconds (an LMM on the untransformed times: the difference of mean reading times, with its
  own Satterthwaite interval).
- reading time, wall_lmm: the same on wall seconds (opening to submission), reads with wall seconds > 0.
- reading time, paired (fixed readers): per case and arm the geometric mean of those reads, cases
  read in both arms; compare_paired(log = True).
- preference, glmm (the default): one row per vote, with the reader of each of the two reports
  (preferences.left_reader/right_reader, else the one reader who submitted the case in that arm);
  fit_preference_glmm with X as the treatment arm; ties (votes for neither) left out and counted.
- preference, binomial (fixed readers): case majorities (at least `preference_min_votes` votes, else
  no majority), analyse_preference; the estimand is the share of decisive cases.
- detection, glmm (the default): reader calls in the final report joined with the reference standard,
  detection_glmm (per finding and pooled; sensitivity and specificity).
- detection, mcnemar (fixed readers) and mrmc: analyse_detection, obuchowski_rockette.
- AI AUC: the model's finding score per case joined with the reference standard; sensitivity and
  specificity at the plan's AI threshold (score ≥ threshold), Wilson intervals.

Multiplicity: the primary is tested at α; the key secondaries (Holm by default) are tested only if
it is rejected (`gatekeeping`); exploratory analyses form a family (BH); subgroup interaction tests
form a family of their own; sensitivity analyses are not adjusted. Every planned test stays in its
family: one that could not be estimated counts as p = 1.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from . import dataset, estimands
from .methods.agreement import analyse_agreement, fleiss_kappa, krippendorff_alpha, ratings_matrix
from .methods.blinding import bang_index_by_arm
from .methods.clmm import fit_clmm
from .methods.detection import analyse_detection, detection_glmm, threshold_accuracy
from .methods.glmm import fit_ordinal_glmm, fit_preference_glmm
from .methods.lmm import design_columns, fit_lmm, fit_lmm_interaction, grouping_codes
from .methods.mrmc import obuchowski_rockette
from .methods.multiplicity import adjust_family
from .methods.paired import compare_paired
from .methods.preference import analyse_preference
from .methods.roc import roc_auc
from .methods.tipping import delta_weights, tipping_point
from .plan import ENDPOINTS, ESTIMAND_ENDPOINTS, FIXED_READERS, SUBGROUP_BY, analyses_of, label_of, main_test, read_plan

SCHEMA = 2
Progress = Callable[[int, str], None]
DEFAULT_TERMS = {"quality": ["case", "reader", "expert", "case:arm"],
                 "radpeer": ["case", "reader", "expert", "case:arm"],
                 "reading_time": ["case", "reader"], "detection": ["case", "reader"]}
# Endpoints whose main test has a treatment × subgroup interaction test (an LMM's F test).
INTERACTION_TESTS = {"lmm"}
# Sections of the results that would reveal which arm is which; shown only after unblinding.
# automation_bias: exists in one arm only; blinding: the experts' guesses, whose majority would tell which code is
# the AI-assisted arm (the sign of Bang's index does)
WITHHELD_SECTIONS = ("automation_bias", "blinding")
WITHHELD = {"status": "withheld", "reason": "shown after unblinding: it exists in one arm only and would reveal "
                                            "which arm is which"}
# Primary analyses whose tipping point for missing outcomes is computed (stats.methods.tipping).
TIPPING_ENDPOINTS = ("quality", "radpeer", "reading_time")


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


def usable_covariates(data: Mapping[str, Any], covariates: list[str], n: int, *, treatment: str,
                      reference: str) -> tuple[list[str], list[str]]:
    """The plan's fixed covariates the data can estimate beside the arm, and a note for each one left out."""
    kept, notes = [], []
    for cov in covariates:
        values = np.asarray(data.get(cov, []))
        if values.shape != (n,):
            notes.append(f"covariate {cov}: left out (not in the data).")
            continue
        if np.unique(values.astype(str)).size < 2:
            notes.append(f"covariate {cov}: left out (one level in these data).")
            continue
        try:
            design_columns(data, arm="arm", covariates=[*kept, cov], treatment=treatment, reference=reference, n=n)
        except ValueError:
            notes.append(f"covariate {cov}: left out (confounded with the arm or another covariate here).")
            continue
        kept.append(cov)
    return kept, notes


def _summary(measure: str, scale: str, estimate, low, high, pvalue=None, **extra) -> dict[str, Any]:
    return {"measure": measure, "scale": scale, "estimate": estimate, "low": low, "high": high,
            "pvalue": pvalue, **extra}


class _Data:
    """The coded snapshot as the analyses need it: rows by entity, case facts, subgroup filters."""

    def __init__(self, view: Mapping[str, Any], *, treatment: str, reference: str, ai_threshold: float,
                 time_field: str = "active_seconds"):
        self.t, self.r = treatment, reference
        self.columns = view["columns"]
        self.time_field = time_field      # the reading-time variable of the estimand
        self.cases = dataset.view_records(view, "cases")
        self.site_of = {c["case"]: c["site"] for c in self.cases}
        self.reads = dataset.view_records(view, "reads")
        self.read_of = {r["read"]: r for r in self.reads}
        self.reports = dataset.view_records(view, "reports")
        self.calls = dataset.view_records(view, "reader_calls")
        self.quality = dataset.view_records(view, "quality_scores")
        self.preferences = dataset.view_records(view, "preferences")
        self.reference = dataset.view_records(view, "reference_standard")
        self.ai = dataset.view_records(view, "ai_scores")
        self.allocations = dataset.view_records(view, "allocations")
        self.screening = dataset.view_records(view, "screening")
        self.deviations = dataset.view_records(view, "deviations")
        self.truth = {(r["case"], r["finding"]): int(r["truth"]) for r in self.reference if r["truth"] is not None}
        self.ai_threshold = ai_threshold
        readers: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in self.reads:
            if r["status"] == "submitted":
                readers[(r["case"], r["arm"])].add(r["reader"])
        # the reader of a case's report in an arm, where one reader submitted it (paired-parallel)
        self.sole_reader = {k: next(iter(v)) for k, v in readers.items() if len(v) == 1}
        self.theta_start: dict[tuple, tuple[float, ...]] = {}

    def timed_reads(self, cases: set[str] | None = None, field: str | None = None) -> list[dict]:
        field = field or self.time_field
        return [r for r in self.reads if r["status"] == "submitted" and (_finite(r.get(field)) or 0) > 0
                and r["arm"] in (self.t, self.r) and (cases is None or r["case"] in cases)]

    def scores(self, field: str, cases: set[str] | None = None) -> list[dict]:
        return [q for q in self.quality if q[field] is not None and q["arm"] in (self.t, self.r)
                and (cases is None or q["case"] in cases)]

    def votes(self, cases: set[str] | None = None) -> list[dict]:
        return [v for v in self.preferences if v["preferred"] in (self.t, self.r, "none")
                and (cases is None or v["case"] in cases)]

    def period(self, row: Mapping[str, Any]) -> str:
        read = self.read_of.get(row.get("read"))
        value = row.get("period", read.get("period") if read else None)
        return str(value if value is not None else 1)

    def subgroup_levels(self, sub: Mapping[str, Any]) -> list[tuple[str, str, set[str]]]:
        """(key, label, cases) of each level of a subgroup: every site, or at least N findings against the rest."""
        if sub["by"] == "site":
            by_site: dict[str, set[str]] = defaultdict(set)
            for c, s in self.site_of.items():
                by_site[str(s)].add(c)
            return [(s, f"site {s}", cases) for s, cases in sorted(by_site.items())]
        n = sub["min_findings"]
        if sub["by"] == "reference":
            if not self.reference:
                raise NotEstimable("there is no reference standard yet")
            known = {r["case"] for r in self.reference if r["truth"] is not None}
            positives = Counter(r["case"] for r in self.reference if r["truth"] == 1)
            what = "positive findings by the reference standard"
        else:
            if not self.ai:
                raise NotEstimable("there are no AI finding scores")
            threshold = sub.get("ai_threshold", self.ai_threshold)
            known = {r["case"] for r in self.ai if r["score"] is not None}
            positives = Counter(r["case"] for r in self.ai if r["score"] is not None and r["score"] >= threshold)
            what = f"findings with an AI score ≥ {threshold:g}"
        members = {c for c in known if positives.get(c, 0) >= n}
        return [(f"ge{n}", f"≥ {n} {what}", members), (f"lt{n}", f"< {n} {what}", known - members)]


# ------------------------------------------------------------------------------------- endpoints


def _model_columns(d: _Data, rows: list[dict], value: str) -> dict[str, Any]:
    return {
        "y": np.array([float(r[value]) for r in rows]),
        "arm": np.array([r["arm"] for r in rows]),
        "case": np.array([r["case"] for r in rows]),
        "reader": np.array([r["reader"] for r in rows]),
        "expert": np.array([r.get("expert") or "" for r in rows]),
        "site": np.array([str(d.site_of.get(r["case"], "")) for r in rows]),
        "period": np.array([d.period(r) for r in rows]),
    }


def _prepared(d: _Data, rows: list[dict], value: str, terms: list[str], covariates: list[str]):
    if len(rows) < 4 or len({r["arm"] for r in rows}) < 2:
        raise NotEstimable("too few rows in one of the arms")
    readers = {arm: {r["reader"] for r in rows if r["arm"] == arm} for arm in (d.t, d.r)}
    if any(len(v) < 2 for v in readers.values()) and any("reader" in t.split(":") for t in terms):
        raise NotEstimable(f"{min(len(v) for v in readers.values())} reader(s) in one arm: the arm effect cannot be "
                           "told apart from that reader's own level (at least two readers per arm are needed)")
    data = _model_columns(d, rows, value)
    n = len(rows)
    kept, notes = usable_terms(data, terms, n)
    if not kept:
        raise NotEstimable("no random-effect term is identifiable: " + " ".join(notes))
    covs, cov_notes = usable_covariates(data, covariates, n, treatment=d.t, reference=d.r)
    return data, kept, covs, notes + cov_notes


def _fit_lmm(d: _Data, data, kept, covs, *, log: bool, value: str = ""):
    # a subgroup's fit starts where the whole trial's fit of the same model ended (same optimum, fewer steps)
    key = (value, log, tuple(kept))
    try:
        res = fit_lmm(data, outcome="y", random=kept, arm="arm", covariates=covs, log=log, treatment=d.t,
                      reference=d.r, start=d.theta_start.get(key))
    except (ValueError, RuntimeError) as exc:
        raise NotEstimable(f"the mixed model could not be fitted: {exc}") from exc
    d.theta_start.setdefault(key, res.theta)
    return res


def _lmm_dict(res, level: float) -> dict:
    try:
        return res.to_dict(level)
    except OverflowError as exc:  # a t quantile on a tiny df: the ratio's interval does not fit in a float
        raise NotEstimable(f"the confidence interval is unbounded (Satterthwaite df = {res.df:.3g}): too few "
                           "readers or cases for this model") from exc


def _lmm(d: _Data, rows: list[dict], value: str, terms: list[str], covariates: list[str], level: float, *,
         log: bool, absolute: bool = False) -> dict:
    data, kept, covs, notes = _prepared(d, rows, value, terms, covariates)
    res = _fit_lmm(d, data, kept, covs, log=log, value=value)
    out = _lmm_dict(res, level)
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
    if absolute:
        # the difference in seconds: the same model on the untransformed times
        seconds = _fit_lmm(d, data, kept, covs, log=False, value=value)
        sec = _lmm_dict(seconds, level)
        out["seconds_model"] = sec
        summary.update(difference_seconds=seconds.estimate, difference_seconds_ci=sec["confidence_interval"],
                       difference_seconds_df=seconds.df, difference_seconds_pvalue=seconds.pvalue)
    return {"n": {"rows": res.n_obs, **{f"levels_{k}": v for k, v in res.n_groups.items()}},
            "random_terms": kept, "covariates": covs, "notes": notes, "result": out, "summary": summary,
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _ordinal(d: _Data, rows: list[dict], value: str, terms: list[str], covariates: list[str], level: float) -> dict:
    data, kept, covs, notes = _prepared(d, rows, value, terms, covariates)
    data["y"] = data["y"].astype(int)
    try:
        res = fit_ordinal_glmm(data, outcome="y", random=kept, covariates=covs, treatment=d.t, reference=d.r)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise NotEstimable(f"the ordinal mixed model could not be fitted: {exc}") from exc
    out = res.to_dict(level)
    if not res.converged:
        notes.append("the optimizer reported no convergence: read with care")
    return {"n": {"rows": res.n_obs, **{f"levels_{k}": v for k, v in res.n_groups.items()}},
            "random_terms": kept, "covariates": covs, "notes": notes, "result": out,
            "summary": _summary("odds ratio of a higher score, X vs Y", "odds_ratio", out["odds_ratio"],
                                *out["odds_ratio_confidence_interval"], res.pvalue, df=res.df),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


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
            "summary": _summary("mean difference of case means X − Y (points; fixed readers)", "difference",
                                res.t.mean_difference, res.t.low, res.t.high, res.t.pvalue, df=res.t.df,
                                wilcoxon_pvalue=res.wilcoxon.pvalue, mean_x=res.mean_x, mean_y=res.mean_y),
            "pvalues": [{"name": "", "pvalue": res.t.pvalue}]}


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
            "summary": _summary("odds ratio of a higher score, X vs Y (case intercept only; fixed readers)",
                                "odds_ratio", out["odds_ratio"], *out["odds_ratio_confidence_interval"], res.pvalue),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _time_paired(d: _Data, level: float, cases=None) -> dict:
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in d.timed_reads(cases):
        by[(r["case"], r["arm"])].append(float(r[d.time_field]))
    both = sorted(c for c in {c for c, _ in by} if (c, d.t) in by and (c, d.r) in by)
    if len(both) < 2:
        raise NotEstimable("fewer than two cases have a timed read in both arms")
    x = [_geomean(by[(c, d.t)]) for c in both]
    y = [_geomean(by[(c, d.r)]) for c in both]
    res = compare_paired(x, y, log=True, confidence_level=level)
    t = res.t
    return {"n": {"cases": len(both)}, "result": res.to_dict(),
            "summary": _summary("ratio of geometric means X / Y (paired case means; fixed readers)", "ratio", t.ratio,
                                t.ratio_low, t.ratio_high, t.pvalue, df=t.df, percent_reduction=100 * (1 - t.ratio),
                                percent_reduction_ci=[100 * (1 - t.ratio_high), 100 * (1 - t.ratio_low)],
                                wilcoxon_pvalue=res.wilcoxon.pvalue),
            "pvalues": [{"name": "", "pvalue": t.pvalue}]}


def _vote_readers(d: _Data, v: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(reader of the X report, reader of the Y report) of a vote's pair."""
    left, right = v.get("left_reader"), v.get("right_reader")
    if left and right and v.get("left_arm") in (d.t, d.r):
        return (left, right) if v["left_arm"] == d.t else (right, left)
    return d.sole_reader.get((v["case"], d.t)), d.sole_reader.get((v["case"], d.r))


def _preference_glmm(d: _Data, level: float, cases=None) -> dict:
    votes = d.votes(cases)
    if not votes:
        raise NotEstimable("no preference votes")
    readers = [_vote_readers(d, v) for v in votes]
    kept = [(v, r) for v, r in zip(votes, readers) if r[0] and r[1]]
    notes = []
    if len(kept) < len(votes):
        notes.append(f"{len(votes) - len(kept)} votes left out: the reader of one of the two reports is not known "
                     "(no single submitted read of the case in that arm)")
    if not kept:
        raise NotEstimable("no vote whose two readers are known")
    data = {"case": [v["case"] for v, _ in kept], "expert": [v["expert"] for v, _ in kept],
            "treatment_reader": [r[0] for _, r in kept], "reference_reader": [r[1] for _, r in kept],
            "preferred": [v["preferred"] for v, _ in kept]}
    try:
        res = fit_preference_glmm(data, treatment=d.t, reference=d.r)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise NotEstimable(f"the preference model could not be fitted: {exc}") from exc
    out = res.to_dict(level)
    if not res.converged:
        notes.append("the optimizer reported no convergence: read with care")
    if res.deciding_terms:
        term = max(res.deciding_terms, key=lambda t: res.variance_components[t])
        notes.append(
            f"the votes are all but decided by the {term.replace('_', ' ')} (its SD on the log-odds scale is "
            f"{math.sqrt(res.variance_components[term]):.0f}; with few experts, the votes of most cases agree): the "
            f"model's probability for a typical case, {res.estimate:.4f}, is far from the share of decisive votes for "
            f"{d.t} ({res.n_treatment} of {res.n_votes}) and its interval spans nearly all of (0, 1); the case "
            "majorities (preference.binomial) say more here")
    n_cases = len({v["case"] for v, _ in kept})
    denominator = (f"{res.n_votes} decisive votes of {res.n_votes + res.n_ties} votes on {n_cases} cases "
                   f"({res.n_ties} votes preferred neither report and are not in the model)")
    low, high = out["confidence_interval"]
    return {"n": {"votes": res.n_votes + res.n_ties, "decisive_votes": res.n_votes, "cases": n_cases},
            "notes": notes, "result": out,
            "summary": _summary("P(an expert prefers the X report), decisive votes, typical case, expert and readers",
                                "share", res.estimate, low, high, res.pvalue, df=res.df, denominator=denominator,
                                null=0.5),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _preference_binomial(d: _Data, level: float, min_votes: int, cases=None) -> dict:
    votes = d.votes(cases)
    if not votes:
        raise NotEstimable("no preference votes")
    sides = None
    if all(v["left_arm"] in (d.t, d.r) for v in votes):
        sides = ["left" if v["left_arm"] == d.t else "right" for v in votes]
    # a crossover pair is one reader's two reports of a case: the unit of a majority is (case, reader)
    crossover = all(v.get("left_reader") and v.get("left_reader") == v.get("right_reader") for v in votes)
    units = [f"{v['case']}|{v['left_reader']}" if crossover else v["case"] for v in votes]
    res = analyse_preference(case=units, expert=[v["expert"] for v in votes],
                             choice=[v["preferred"] for v in votes], treatment=d.t, reference=d.r, side=sides,
                             confidence_level=level, min_votes=min_votes)
    decisive = res.wins + res.losses
    unit = "pairs (case, reader)" if crossover else "cases"
    denominator = (f"{decisive} decisive {unit} of {res.n_cases} {unit} with a vote ({res.ties} without a majority, "
                   f"{res.too_few_votes} of them with fewer than {min_votes} votes)")
    return {"n": {"cases": res.n_cases, "votes": len(votes), "decisive_cases": decisive},
            "result": res.to_dict(),
            "summary": _summary("share of decisive cases whose experts' majority preferred X (fixed readers)", "share",
                                res.share_decisive, res.decisive_low, res.decisive_high, res.pvalue,
                                wins=res.wins, losses=res.losses, ties=res.ties, n_cases=res.n_cases,
                                denominator=denominator, null=0.5),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _detection_rows(d: _Data) -> list[dict]:
    return [{**c, "truth": d.truth[(c["case"], c["finding"])]} for c in d.calls
            if (c["case"], c["finding"]) in d.truth and c["arm"] in (d.t, d.r) and c["call"] is not None]


def _detection_glmm(d: _Data, plan: Mapping[str, Any], level: float) -> dict:
    rows = _detection_rows(d)
    if not rows:
        raise NotEstimable("no reader calls with a reference standard")
    data = _model_columns(d, rows, "truth")
    terms, notes = usable_terms(data, plan.get("random_effects", {}).get("detection") or DEFAULT_TERMS["detection"],
                                len(rows))
    if not terms:
        raise NotEstimable("no random-effect term is identifiable: " + " ".join(notes))
    covs = {c: list(data[c]) for c in plan.get("covariates", {}).get("detection", []) if c in data}
    res = detection_glmm(case=data["case"], arm=data["arm"], reader=data["reader"],
                         finding=[r["finding"] for r in rows], truth=[r["truth"] for r in rows],
                         call=[r["call"] for r in rows], treatment=d.t, reference=d.r, random=tuple(terms),
                         covariates=covs, confidence_level=level)
    pvalues = []
    for measure in ("sensitivity", "specificity"):
        fit = res.pooled[measure]
        pvalues.append({"name": f"pooled {measure}", "pvalue": fit.result.pvalue if fit.result else None})
    if all(p["pvalue"] is None for p in pvalues):
        raise NotEstimable("; ".join(f"{m}: {res.pooled[m].reason}" for m in ("sensitivity", "specificity"))[:500])
    return {"n": {"rows": len(rows), "cases": len({r["case"] for r in rows})}, "random_terms": terms,
            "notes": notes, "result": res.to_dict(), "summary": None, "pvalues": pvalues}


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
            pvalues.append({"name": f"{f.finding}, {label}",
                            "pvalue": test.pvalue if test is not None and _finite(test.pvalue) is not None else None})
    notes = []
    if res.unpaired_reads:
        notes.append(f"{res.unpaired_reads} reads paired with nothing (a duplicate read, or a case read in one arm) "
                     "are left out of McNemar")
    return {"n": {"rows": len(rows), "cases": len({r["case"] for r in rows})}, "result": res.to_dict(),
            "notes": notes, "summary": None, "pvalues": pvalues}


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
                pvalues.append({"name": f"{finding}, {fom}", "pvalue": None})
                continue
            per_finding[finding][fom] = {"status": "ok", "result": res.to_dict(), "difference": res.difference,
                                         "pvalue": res.pvalue}
            pvalues.append({"name": f"{finding}, {fom}", "pvalue": res.pvalue if _finite(res.pvalue) is not None
                            else None})
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
        accuracy = (threshold_accuracy([t for t, _ in pairs], [s for _, s in pairs], threshold=d.ai_threshold,
                                       confidence_level=level).to_dict() if pairs else None)
        try:
            res = roc_auc([t for t, _ in pairs], [s for _, s in pairs], confidence_level=level)
        except ValueError as exc:
            per_finding[finding] = {"status": "not_estimable", "reason": str(exc), "n": len(pairs),
                                    "at_threshold": accuracy}
            continue
        per_finding[finding] = {"status": "ok", "result": res.to_dict(), "n": len(pairs), "at_threshold": accuracy}
    if not any(v["status"] == "ok" for v in per_finding.values()):
        raise NotEstimable("no finding has two diseased and two healthy cases with an AI score")
    return {"n": {"findings": len(per_finding)}, "result": {"findings": per_finding, "threshold": d.ai_threshold},
            "summary": None, "pvalues": []}


def _terms_of(plan: Mapping[str, Any], endpoint: str) -> list[str]:
    return list(plan.get("random_effects", {}).get(endpoint) or DEFAULT_TERMS[endpoint])


def _covariates_of(plan: Mapping[str, Any], endpoint: str) -> list[str]:
    return list(plan.get("covariates", {}).get(endpoint, []))


def _compute(d: _Data, plan: Mapping[str, Any], endpoint: str, test: str, cases=None) -> dict:
    level = plan["confidence_level"]
    if endpoint in ("quality", "radpeer"):
        field = "score" if endpoint == "quality" else "radpeer_score"
        rows = d.scores(field, cases)
        if test == "lmm":
            return _lmm(d, rows, field, _terms_of(plan, endpoint), _covariates_of(plan, endpoint), level, log=False)
        if test == "ordinal_glmm":
            return _ordinal(d, rows, field, _terms_of(plan, endpoint), _covariates_of(plan, endpoint), level)
        if test == "paired":
            return _score_paired(d, field, level, cases)
        if test == "clmm":
            return _clmm(d, rows, field, level)
    if endpoint == "reading_time":
        terms, covs = _terms_of(plan, endpoint), _covariates_of(plan, endpoint)
        if test == "lmm":
            return _lmm(d, d.timed_reads(cases), d.time_field, terms, covs, level, log=True, absolute=True)
        if test == "wall_lmm":
            return _lmm(d, d.timed_reads(cases, "wall_seconds"), "wall_seconds", terms, covs, level, log=True,
                        absolute=True)
        if test == "paired":
            return _time_paired(d, level, cases)
    if endpoint == "preference":
        if test == "glmm":
            return _preference_glmm(d, level, cases)
        return _preference_binomial(d, level, plan.get("preference_min_votes", 1), cases)
    if endpoint == "detection":
        if test == "glmm":
            return _detection_glmm(d, plan, level)
        return _mrmc(d, level) if test == "mrmc" else _detection(d, level)
    if endpoint == "ai_auc":
        return _ai_auc(d, level)
    raise NotEstimable(f"no analysis for {endpoint} by {test}")


def planned_tests(endpoint: str, test: str, findings: list[str]) -> list[str]:
    """The names of the tests an analysis contributes to its family, known before the data: its planned size."""
    if endpoint == "ai_auc":
        return []
    if endpoint == "detection":
        if test == "glmm":
            return ["pooled sensitivity", "pooled specificity"]
        return [f"{f}, {m}" for f in findings for m in ("sensitivity", "specificity")]
    return [""]


def _label(endpoint: str, test: str) -> dict[str, Any]:
    return {"label": ENDPOINTS[endpoint]["label"], "test_label": label_of(endpoint, test),
            "fixed_readers": test in FIXED_READERS}


def _run_one(d: _Data, plan, *, key: str, endpoint: str, test: str, role: str, findings: list[str], cases=None,
             subgroup=None, level_label=None) -> dict:
    entry = {"key": key, "endpoint": endpoint, "test": test, "role": role, **_label(endpoint, test)}
    if subgroup is not None:
        entry["subgroup"] = subgroup
        entry["subgroup_level"] = level_label
    try:
        entry.update(status="ok", **_compute(d, plan, endpoint, test, cases))
    except NotEstimable as exc:
        entry.update(status="not_estimable", reason=str(exc), summary=None, pvalues=[], result=None)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        entry.update(status="not_estimable", reason=f"the method refused the data: {exc}", summary=None,
                     pvalues=[], result=None)
    # the planned tests, in their planned order: one that could not be computed is there with p = None
    names = planned_tests(endpoint, test, findings) if role != "subgroup" else [p["name"] for p in entry["pvalues"]]
    got = {p["name"]: p["pvalue"] for p in entry["pvalues"]}
    extra = [p for p in entry["pvalues"] if p["name"] not in names]
    entry["pvalues"] = [{"name": n, "pvalue": got.get(n)} for n in names] + extra
    return entry


# ------------------------------------------------------------------------------------- subgroups


def _interaction(d: _Data, plan, sub: Mapping[str, Any], levels: list[tuple[str, str, set[str]]],
                 endpoint: str) -> dict:
    """The treatment × subgroup interaction F test (LMM) on the cases of every level."""
    level_of = {c: label for _, label, cases in levels for c in cases}
    if endpoint in ("quality", "radpeer"):
        field = "score" if endpoint == "quality" else "radpeer_score"
        rows, value, log = d.scores(field, set(level_of)), field, False
    else:
        rows, value, log = d.timed_reads(set(level_of)), d.time_field, True
    data, kept, covs, notes = _prepared(d, rows, value, _terms_of(plan, endpoint), _covariates_of(plan, endpoint))
    by = "site" if sub["by"] == "site" else "subgroup"
    data["subgroup"] = np.array([level_of[c] for c in data["case"]])
    present = sorted(set(data[by].tolist()))
    if len(present) < 2:
        raise NotEstimable("the data hold one level of this subgroup only")
    try:
        res = fit_lmm_interaction(data, outcome="y", random=kept, by=by, covariates=covs, log=log, treatment=d.t,
                                  reference=d.r, start=d.theta_start.get((value, log, tuple(kept))))
    except (ValueError, RuntimeError) as exc:
        raise NotEstimable(f"the interaction model could not be fitted: {exc}") from exc
    if not res.converged:
        notes.append("the optimizer reported no convergence: read with care")
    return {"n": {"rows": res.n_obs, "levels": len(res.levels)}, "random_terms": kept, "covariates": covs,
            "notes": notes, "result": res.to_dict(),
            "summary": _summary(f"arm × {sub['name']} interaction: F({res.df_numerator}, "
                                f"{res.df_denominator:.1f})", "interaction", res.statistic, None, None, res.pvalue,
                                df=res.df_denominator, df_numerator=res.df_numerator),
            "pvalues": [{"name": "", "pvalue": res.pvalue}]}


def _subgroups(d: _Data, ds: Mapping[str, _Data], plan, findings: list[str], report: Progress,
               progress: Callable[[], int]) -> tuple[list[dict], list[dict]]:
    summaries, analyses = [], []
    for sub in plan.get("subgroups", []):
        try:
            levels = d.subgroup_levels(sub)
            summaries.append({**sub, "status": "ok", "description": SUBGROUP_BY[sub["by"]],
                              "levels": [{"key": k, "label": lab, "cases": len(c)} for k, lab, c in levels],
                              "cases": len(levels[0][2]) if sub["by"] != "site" else sum(len(c) for *_, c in levels)})
        except NotEstimable as exc:
            levels = None
            summaries.append({**sub, "status": "not_estimable", "reason": str(exc), "levels": [], "cases": 0})
        for endpoint in sub["endpoints"]:
            test = main_test(plan, endpoint)
            report(progress(), f"subgroup {sub['name']}: {endpoint}")
            base = {"endpoint": endpoint, "subgroup": sub["name"], **_label(endpoint, test)}
            if levels is None:
                analyses.append({**base, "key": f"subgroup.{sub['name']}.{endpoint}.{test}", "test": test,
                                 "role": "subgroup", "subgroup_level": None, "status": "not_estimable",
                                 "reason": summaries[-1]["reason"], "summary": None, "pvalues": [], "result": None})
                continue
            for key, label, cases in levels:
                analyses.append(_run_one(ds.get(endpoint, d), plan,
                                         key=f"subgroup.{sub['name']}.{key}.{endpoint}.{test}",
                                         endpoint=endpoint, test=test, role="subgroup", findings=findings,
                                         cases=cases, subgroup=sub["name"], level_label=label))
            entry = {**base, "key": f"subgroup.{sub['name']}.{endpoint}.interaction", "test": "interaction",
                     "role": "subgroup_interaction", "subgroup_level": None,
                     "test_label": "treatment × subgroup interaction, F test with Satterthwaite denominator df"}
            if endpoint in ("quality", "radpeer", "reading_time") and test in INTERACTION_TESTS:
                try:
                    entry.update(status="ok", **_interaction(ds.get(endpoint, d), plan, sub, levels, endpoint))
                except NotEstimable as exc:
                    entry.update(status="not_estimable", reason=str(exc), summary=None, result=None,
                                 pvalues=[{"name": "", "pvalue": None}])
                analyses.append(entry)
            else:
                entry.update(status="not_planned", reason=f"no interaction test for {endpoint} by {test}: the levels "
                             "are analysed one by one only", summary=None, result=None, pvalues=[])
                analyses.append(entry)
    return summaries, analyses


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
    out: dict[str, Any] = {"reading_time": {}, "wall_time": {}, "quality": {}, "radpeer": {}}
    for arm in (d.t, d.r):
        out["reading_time"][arm] = _describe([float(r["active_seconds"]) for r in d.timed_reads(field="active_seconds")
                                              if r["arm"] == arm])
        out["wall_time"][arm] = _describe([float(r["wall_seconds"]) for r in d.timed_reads(field="wall_seconds")
                                           if r["arm"] == arm])
        for field, name in (("score", "quality"), ("radpeer_score", "radpeer")):
            values = [int(q[field]) for q in d.scores(field) if q["arm"] == arm]
            desc = _describe([float(v) for v in values])
            desc["counts"] = {str(k): values.count(k) for k in range(1, 6)}
            out[name][arm] = desc
    return out


def blinding(d: _Data, level: float) -> dict[str, Any]:
    """Bang's blinding index from the experts' optional guess on the pair item ("which report was written with AI
    assistance?"). Each answer is one guess about a pair; the groups are the true (coded) arm of the left report
    (stats.methods.blinding). The index is computed on the hypothesis that the treatment code is the AI-assisted
    arm; if it is not, every index changes sign (the report turns them round once the mapping is revealed). The
    section is withheld before unblinding (WITHHELD_SECTIONS): with experts who can tell, the sign tells which
    code is which. Before scoring, the conduct page's style check measures the same risk without any guess."""
    counts = {arm: {"named_left": 0, "named_right": 0, "unsure": 0} for arm in (d.t, d.r)}
    for p in d.preferences:
        guess, left = p.get("guess"), p.get("left_arm")
        if not guess or left not in counts:
            continue
        counts[left]["unsure" if guess == "unsure" else "named_left" if guess == left else "named_right"] += 1
    n = sum(sum(c.values()) for c in counts.values())
    if n == 0:
        return {"status": "not_asked"}
    if any(sum(c.values()) == 0 for c in counts.values()):
        return {"status": "not_estimable", "n": n, "reason": "no guess about a pair with one of the arms on the left"}
    by_arm = bang_index_by_arm({
        "treatment": (counts[d.t]["named_left"], counts[d.t]["named_right"], counts[d.t]["unsure"]),
        "reference": (counts[d.r]["named_left"], counts[d.r]["named_right"], counts[d.r]["unsure"])})
    signed = {}
    for arm, index in ((d.t, by_arm.treatment), (d.r, by_arm.reference)):
        low, high = index.confidence_interval(level)
        signed[arm] = {"estimate": index.estimate, "se": index.standard_error, "ci": [low, high], "n": index.n,
                       "counts": counts[arm]}
    return {"status": "ok", "n": n, "unsure": sum(c["unsure"] for c in counts.values()), "by_left_arm": signed,
            "hypothesis": d.t}


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
    exclude("preference", "read in both arms but no preference vote",
            len(read_complete - voted) if paired_design else 0)
    if d.reference:
        exclude("detection", "no reference standard", len(read_complete - {c for c, _ in d.truth}))
    primary = analyses.get("primary")
    analysed = None
    if primary and primary["status"] == "ok":
        n = primary["n"]
        analysed = n.get("cases", n.get("levels_case", n.get("rows")))
    readers = {a: sorted({r["reader"] for r in reads_by_arm[a]}) for a in arms}
    allocated = Counter(a["arm"] for a in d.allocations if a["unit_type"] == "reader")
    latest: dict[Any, dict] = {}
    for rep in d.reports:
        if rep["read"] not in latest or int(rep["version"]) > int(latest[rep["read"]]["version"]):
            latest[rep["read"]] = rep
    signed_arms: dict[str, set] = defaultdict(set)
    for rep in latest.values():
        read = d.read_of.get(rep["read"])
        if read is not None and rep.get("signed") == 1:
            signed_arms[read["case"]].add(read["arm"])
    # read complete and signed: in both arms (paired), or the one report (case-randomized)
    signed_complete = {c for c in read_complete
                       if (signed_arms.get(c, set()) >= {d.t, d.r} if paired_design else signed_arms.get(c))}
    arm_of_reader = {a["unit"]: a["arm"] for a in d.allocations if a["unit_type"] == "reader"}
    withdrawn = Counter(arm_of_reader.get(v["reader"]) for v in d.deviations
                        if v["kind"] == "reader_withdrawn" and v.get("reader") is not None)
    return {
        "enrolled": len(cases),
        # the screening log (prospective trials; a reader study's uploads too): every arriving image
        "screened": len(d.screening),
        # a case is a study: the other images of an enrolled study join its case (not a case of their own)
        "images_added": sum(e["outcome"] == "added" for e in d.screening),
        "not_enrolled": [{"code": code, "n": n} for code, n in sorted(
            Counter(e["code"] for e in d.screening if e["outcome"] == "not_enrolled").items())],
        "deviations": dict(sorted(Counter(v["kind"] for v in d.deviations).items())),
        "intercurrent_events": sum(bool(v["intercurrent"]) for v in d.deviations),
        "cases_withdrawn": sum(v["kind"] == "case_withdrawn" for v in d.deviations),
        # where the reader column is withheld (masked runs) the withdrawals are counted, not split by arm
        "readers_withdrawn": sum(v["kind"] == "reader_withdrawn" for v in d.deviations),
        "arms": {a: {"readers_allocated": allocated.get(a, 0), "readers_reading": len(readers[a]),
                     "readers_withdrawn": withdrawn.get(a, 0),
                     "reads_rerouted": sum(r["status"] == "rerouted" for r in reads_by_arm[a]),
                     "reads_closed_case_withdrawn": sum(r["status"] == "withdrawn" for r in reads_by_arm[a]),
                     "reads_routed": len(reads_by_arm[a]),
                     "reads_submitted": sum(r["status"] == "submitted" for r in reads_by_arm[a]),
                     "cases_read": len(submitted[a]), "cases_scored": len(scored[a] & submitted[a])}
                 for a in arms},
        "paired_design": paired_design,
        "cases_read_complete": len(read_complete),
        "cases_signed_complete": len(signed_complete),
        # cases whose AI draft never became ready (failed, or still pending): no finding scores in the data
        "cases_without_ai_draft": len(cases - {a["case"] for a in d.ai}) if d.ai else None,
        "cases_scored_complete": len(scored_complete),
        "cases_with_preference": len(voted & read_complete) if paired_design else len(voted),
        "analysed_primary": analysed,
        "primary_unit": "cases" if primary and "cases" in (primary.get("n") or {}) else "rows",
        "excluded": excluded,
        # CONSORT-AI: the model versions that drafted, and how many experts scored each report
        "model_versions": sorted({str(a["model"]) for a in d.ai if a.get("model")}),
        "experts_per_report": _experts_per_report(d),
    }


def _experts_per_report(d: _Data) -> dict[str, Any]:
    experts: dict[tuple, set] = defaultdict(set)
    for q in d.quality:
        if q["score"] is not None:
            experts[(q["case"], q["arm"], q.get("read"))].add(q["expert"])
    counts = [len(v) for v in experts.values()]
    if not counts:
        return {"reports": 0}
    return {"reports": len(counts), "min": min(counts), "median": float(np.median(counts)), "max": max(counts)}


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
    """Agreement between the experts: ICC (the one the design supports), Fleiss' κ and Krippendorff's ordinal α.

    ICC(2,1)/(3,1) need the same experts on every report; where the experts of a report are
    assigned per report (raters are positions), ICC(1,1) is the one to read (`icc`). Krippendorff's
    α uses every report with two or more scores, whatever the number of experts.
    """
    out: dict[str, Any] = {}
    for field, name in (("score", "quality"), ("radpeer_score", "radpeer")):
        items: dict[Any, dict[str, float]] = defaultdict(dict)
        for q in d.scores(field):
            items[(q["case"], q["arm"], q["reader"])][q["expert"]] = float(q[field])
        if not items:
            out[name] = {"status": "not_estimable", "reason": "no scores"}
            continue
        keys = ["|".join(i) for i, votes in items.items() for _ in votes]
        values = [v for votes in items.values() for v in votes.values()]
        try:
            alpha = krippendorff_alpha(keys, values, metric="ordinal").to_dict()
        except ValueError as exc:
            alpha = {"status": "not_estimable", "reason": str(exc)}
        item, rater, value, same_raters, notes = _matrix_by_slot(items)
        try:
            res = analyse_agreement(item=["|".join(i) for i in item], rater=rater, score=value, confidence_level=level)
        except (ValueError, ArithmeticError) as exc:   # e.g. every score the same: no variance to share out
            out[name] = {"status": "not_estimable", "reason": str(exc), "krippendorff_ordinal": alpha}
            continue
        result = res.to_dict()
        result["krippendorff_ordinal"] = alpha     # on every report, not only the complete ones
        out[name] = {"status": "ok", "same_raters": same_raters, "notes": notes, "result": result,
                     "icc": "icc2" if same_raters else "icc1"}
    votes: dict[str, dict[str, float]] = defaultdict(dict)
    code = {d.t: 1.0, d.r: 2.0, "none": 0.0}
    for v in d.votes():
        votes[v["case"]][v["expert"]] = code[v["preferred"]]
    if votes:
        item, rater, value, same_raters, notes = _matrix_by_slot(votes)
        try:
            _, _, matrix = ratings_matrix(item, rater, value)
            res = fleiss_kappa(matrix)
            keys = [c for c, vs in votes.items() for _ in vs]
            nominal = krippendorff_alpha(keys, [x for vs in votes.values() for x in vs.values()], metric="nominal")
            out["preference"] = {"status": "ok", "same_raters": same_raters, "notes": notes, "result": res.to_dict(),
                                 "krippendorff_nominal": nominal.to_dict()}
        except ValueError as exc:
            out["preference"] = {"status": "not_estimable", "reason": str(exc)}
    else:
        out["preference"] = {"status": "not_estimable", "reason": "no preference votes"}
    return out


def automation_bias(d: _Data) -> dict[str, Any]:
    """How much of the AI draft the final reports kept. Exists in one arm only: withheld until unblinding."""
    if "draft_kept_share" not in d.columns["reports"]:      # a masked view: the column was withheld
        return dict(WITHHELD)
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


# ------------------------------------------------------------------------------------- estimands


def _estimand_data(view: Mapping[str, Any], d: _Data, plan: Mapping[str, Any], flags: estimands.EventFlags, *,
                   ai_threshold: float) -> tuple[dict[str, _Data], dict[str, Any]]:
    """Each endpoint's data under its estimand (the whole-trial data where the estimand changes nothing)."""
    specs = plan.get("estimands")
    ds: dict[str, _Data] = {}
    applied: dict[str, Any] = {}
    for endpoint in ESTIMAND_ENDPOINTS:
        spec = specs[endpoint] if specs else None
        used, summary = estimands.apply(view, endpoint=endpoint, estimand=spec, flags=flags, arms=(d.t, d.r))
        applied[endpoint] = summary
        time_field = spec["variable"] if spec and endpoint == "reading_time" else "active_seconds"
        if used is view and time_field == "active_seconds":
            ds[endpoint] = d
        else:
            ds[endpoint] = _Data(used, treatment=d.t, reference=d.r, ai_threshold=ai_threshold, time_field=time_field)
    return ds, applied


def _expected_experts(rows: list[dict]) -> dict[str, list[str]]:
    """The experts expected to score each report of a case: those who scored any report of it, topped up to k (the
    most common number of scores of a scored report) with the experts who scored most often. The dataset has no
    record of expert assignments, so an expert missing from every report of a case is found only this way."""
    by_case: dict[str, set[str]] = defaultdict(set)
    per_report: Counter = Counter()
    for q in rows:
        by_case[q["case"]].add(q["expert"])
        per_report[q["read"]] += 1
    busiest = [e for e, _ in sorted(Counter(q["expert"] for q in rows).items(), key=lambda kv: (-kv[1], kv[0]))]
    k = Counter(per_report.values()).most_common(1)[0][0] if per_report else 0
    out = {}
    for case in {q["case"] for q in rows} | set(by_case):
        experts = sorted(by_case[case])
        experts += [e for e in busiest if e not in by_case[case]][:max(0, k - len(experts))]
        out[case] = experts
    return defaultdict(lambda: sorted(busiest[:k]), out)


def _tipping_point(d: _Data, plan: Mapping[str, Any], primary: Mapping[str, Any]) -> dict[str, Any]:
    """The δ-adjusted tipping point of the primary for its missing outcomes (stats.methods.tipping)."""
    if not plan.get("tipping_point"):
        return {"status": "not_planned"}
    endpoint, test = primary["endpoint"], primary["test"]
    if test != "lmm" or endpoint not in TIPPING_ENDPOINTS:
        return {"status": "not_computed", "reason": f"the tipping point is defined for a linear mixed model primary; "
                                                    f"this plan's primary is {endpoint} by {test}"}
    if primary["status"] != "ok":
        return {"status": "not_computed", "reason": "the primary analysis was not estimable"}
    spec = (plan.get("estimands") or {}).get(endpoint) or {}
    if endpoint == "reading_time":
        field, log = d.time_field, True
        observed = d.timed_reads()
    else:
        field, log = ("score" if endpoint == "quality" else "radpeer_score"), False
        observed = d.scores(field)
    reads = [r for r in d.reads if r["arm"] in (d.t, d.r)]
    if spec.get("variable") == "signed_report":
        unsigned = {rep["read"] for rep in d.reports if rep["final"] == 1 and rep["signed"] != 1}
        reads = [r for r in reads if r["read"] not in unsigned]
    if spec.get("population") == "complete_cases":
        present = {row["case"] for row in observed}
        reads = [r for r in reads if r["case"] in present]
    missing_rows: list[dict] = []
    if log:
        seen = {r["read"] for r in observed}
        missing_rows = [r for r in reads if r["read"] not in seen]
    else:
        experts_of = _expected_experts(observed)
        scored = {(q["read"], q["expert"]) for q in observed}
        for r in reads:
            for expert in experts_of[r["case"]]:
                if (r["read"], expert) not in scored:
                    missing_rows.append({**r, "expert": expert})
    without = {r["read"] for r in missing_rows} - {r["read"] for r in observed}
    out: dict[str, Any] = {"analysis": primary["key"], "scale": "log seconds" if log else "points",
                           "reads_without_outcome": len(without),
                           "method": "δ-adjusted pattern mixture at the fit's variance parameters: the limit of "
                                     "many δ-shifted MAR imputations (stats.methods.tipping)"}
    res = primary["result"]
    try:
        rows = observed + missing_rows
        data = _model_columns(d, [{**r, "_y": 1.0} for r in rows], "_y")
        weights = delta_weights(data, missing=[False] * len(observed) + [True] * len(missing_rows),
                                random=primary["random_terms"], variance_components=res["variance_components"],
                                residual_variance=res["residual_variance"], covariates=primary["covariates"],
                                treatment=d.t, reference=d.r)
        tp = tipping_point(estimate=res["estimate"], se=res["se"], df=res["df"], alpha=plan["alpha"],
                           weights=weights)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError) as exc:
        return {**out, "status": "not_computed", "reason": f"the completed design could not be solved: {exc}"}
    arm = {"treatment": d.t, "reference": d.r}
    t = tp.to_dict()
    for key in ("weights", "missing", "expected"):
        t[key] = {arm[k]: v for k, v in t[key].items()}
    t["favoured"] = arm[t["favoured"]]
    if log:
        t["shift_ratio"] = None if tp.shift is None else math.exp(tp.shift)
        t["shift_both_ratio"] = None if tp.shift_both is None else math.exp(tp.shift_both)
    if tp.shift is None:
        t["note"] = (f"arm {t['favoured']} has no missing outcome: no shift of the missing outcomes of that arm "
                     "changes the conclusion")
    return {**out, "status": "ok", **t}


# ----------------------------------------------------------------------------------------- the run


def _family_entries(analyses: list[dict], roles: tuple[str, ...]) -> list[tuple[dict, dict, str]]:
    out = []
    for a in analyses:
        if a["role"] not in roles:
            continue
        for p in a["pvalues"]:
            out.append((a, p, a["key"] + (f": {p['name']}" if p["name"] else "")))
    return out


def _apply_family(name: str, entries: list[tuple[dict, dict, str]], *, method: str, alpha: float,
                  gate_open: bool = True, gate: str = "") -> dict[str, Any] | None:
    if not entries:
        return None
    res = adjust_family(name, [_finite(p["pvalue"]) for _, p, _ in entries], names=[n for *_, n in entries],
                        method=method, alpha=alpha, gate_open=gate_open, gate=gate)
    for (_, p, _), tested, adj, rej in zip(entries, res.pvalues, res.adjusted, res.rejected):
        p.update(family=name, tested_pvalue=tested, adjusted=adj, rejected=rej)
    return res.to_dict()


def multiplicity(analyses: list[dict], plan: Mapping[str, Any]) -> dict[str, Any]:
    """The confirmatory order: the primary at α; then, if the plan gates them and the primary is rejected,
    the key secondaries; the exploratory and the subgroup-interaction families apart; sensitivities unadjusted."""
    alpha = plan["alpha"]
    primary = next(a for a in analyses if a["role"] == "primary")
    head = primary["pvalues"][0] if primary["pvalues"] else {"name": "", "pvalue": None}
    p = _finite(head["pvalue"])
    rejected = p is not None and p <= alpha
    for i, q in enumerate(primary["pvalues"]):
        # the primary's first planned test is the confirmatory one; any other is reported, not tested
        q.update(family="primary" if i == 0 else "none", tested_pvalue=(p if p is not None else 1.0) if i == 0
                 else q["pvalue"], adjusted=(p if p is not None else 1.0) if i == 0 else None,
                 rejected=rejected if i == 0 else False)
    gated = bool(plan.get("gatekeeping"))
    out = {"primary": {"name": primary["key"] + (f": {head['name']}" if head["name"] else ""),
                       "pvalue": p if p is not None else 1.0, "estimable": p is not None, "alpha": alpha,
                       "rejected": rejected},
           "gatekeeping": gated}
    gate = f"the primary ({primary['key']}) rejected at α = {alpha}" if gated else ""
    out["secondary"] = _apply_family("secondary", _family_entries(analyses, ("secondary",)),
                                     method=plan["secondary_adjustment"], alpha=alpha,
                                     gate_open=rejected or not gated, gate=gate)
    out["exploratory"] = _apply_family("exploratory", _family_entries(analyses, ("exploratory",)),
                                       method=plan["exploratory_adjustment"], alpha=alpha)
    out["subgroup"] = _apply_family("subgroup", _family_entries(analyses, ("subgroup_interaction",)),
                                    method=plan.get("subgroup_adjustment", "bh"), alpha=alpha)
    for a in analyses:
        if a["role"] in ("sensitivity", "subgroup"):
            for q in a["pvalues"]:
                q.update(family="none", tested_pvalue=q["pvalue"], adjusted=None, rejected=None)
    return out


def run_analysis(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str, findings: list[str],
                 treatment: str = "X", reference: str = "Y", progress: Progress | None = None) -> dict[str, Any]:
    """Every analysis of `plan` (any readable schema) on the coded snapshot `view`; JSON-ready results in X/Y terms."""
    report = progress or (lambda pct, stage: None)
    stored_schema = plan.get("schema", 1)
    plan = read_plan(dict(plan))
    d = _Data(view, treatment=treatment, reference=reference, ai_threshold=plan.get("ai_threshold", 0.5))
    level, alpha = plan["confidence_level"], plan["alpha"]
    findings = list(findings)
    planned = analyses_of(dict(plan))
    n_sub = sum(len(s["endpoints"]) for s in plan.get("subgroups", []))
    total = len(planned) + n_sub + 2
    done = [0]

    def step() -> int:
        done[0] += 1
        return int(100 * (done[0] - 1) / total)

    # the estimands: events flagged and counted; each endpoint analysed on the rows its estimand defines
    flags = estimands.flag_events(view, design=design)
    ds, applied = _estimand_data(view, d, plan, flags, ai_threshold=plan.get("ai_threshold", 0.5))
    analyses: list[dict] = []
    for job in planned:
        report(step(), f"{ENDPOINTS[job['endpoint']]['label']}: {job['test']}")
        analyses.append(_run_one(ds.get(job["endpoint"], d), plan, key=f"{job['endpoint']}.{job['test']}",
                                 endpoint=job["endpoint"], test=job["test"], role=job["role"], findings=findings))
    subgroups, sub_analyses = _subgroups(d, ds, plan, findings, report, step)
    analyses += sub_analyses
    report(int(100 * done[0] / total), "agreement and descriptives")
    families = multiplicity(analyses, plan)
    by_role = {"primary": analyses[0]}
    results = {
        "schema": SCHEMA,
        "plan_schema": stored_schema,
        "plan_read_as": plan,
        "arms": {"treatment": treatment, "reference": reference},
        "design": design,
        "findings": findings,
        "alpha": alpha,
        "confidence_level": level,
        "analyses": {a["key"]: a for a in analyses},
        "order": [a["key"] for a in analyses],
        "subgroups": subgroups,
        "multiplicity": families,
        "estimands": {**estimands.count_events(flags, arms=(treatment, reference)), "endpoints": applied},
        "tipping_point": _tipping_point(ds.get(analyses[0]["endpoint"], d), plan, analyses[0]),
        "descriptives": descriptives(d),
        "agreement": agreement(d, level),
        "automation_bias": automation_bias(d),
        "blinding": blinding(d, level),
        "flow": flow(d, by_role, plan),
    }
    report(100, "done")
    return clean(results)




def primary_analysis(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str, findings: list[str],
                     treatment: str = "X", reference: str = "Y") -> dict[str, Any]:
    """The plan's primary analysis alone, on the rows its estimand defines, as `run_analysis` computes it (an
    efficacy interim look); JSON-ready."""
    plan = read_plan(dict(plan))
    d = _Data(view, treatment=treatment, reference=reference, ai_threshold=plan.get("ai_threshold", 0.5))
    flags = estimands.flag_events(view, design=design)
    ds, _ = _estimand_data(view, d, plan, flags, ai_threshold=plan.get("ai_threshold", 0.5))
    job = plan["primary"]
    return clean(_run_one(ds.get(job["endpoint"], d), plan, key=f"{job['endpoint']}.{job['test']}",
                          endpoint=job["endpoint"], test=job["test"], role="primary", findings=list(findings)))


def without_withheld(results: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(results)
    for key in WITHHELD_SECTIONS:
        if key in out:
            out[key] = dict(WITHHELD)
    return out


__all__ = ["run_analysis", "primary_analysis", "without_withheld", "clean", "usable_terms", "usable_covariates",
           "planned_tests", "multiplicity", "NotEstimable"]


if __name__ == "__main__":   # python -m stats.analysis PLAN.json DATA: re-run a frozen plan on an export
    from stats.rerun import main

    raise SystemExit(main())
