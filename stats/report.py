"""The trial report from a run's results (no Django): sections of formatted tables, the CONSORT-style flow, plots.

`build_report` turns stored results into a plain structure (titles, tables of formatted cells,
notes) that the page template and the self-contained download render alike; it reads the results
of every results schema (a finished run never changes), labels every analysis that treats the
readers as fixed, and states each share's denominator; `plots` draws the
figures with matplotlib's Agg backend (no display, no pyplot state: safe in web and worker
processes). Arms are named by `labels` ("arm X" before unblinding), never by the results.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from scoring import radpeer as radpeer_scale

ARMS = ("X", "Y")
PLOTS = ("reading_time", "quality", "forest", "preference")
PLOT_TITLES = {
    "reading_time": "Reading time by arm",
    "quality": "Quality scores by arm",
    "forest": "Effects with confidence intervals",
    "preference": "Expert preference: case majorities and the probability an expert prefers X",
}


# --------------------------------------------------------------------------------------- formatting


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 6:
        return f"{value:.{max(digits - 1, 0)}e}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{min(decimals, 6)}f}"


def pval(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f} %"


def ci(low: Any, high: Any, fmt=num) -> str:
    if low is None or high is None:
        return "–"
    return f"[{fmt(low)}, {fmt(high)}]"


def _pct_ci(low: Any, high: Any) -> str:
    return ci(low, high, lambda v: f"{100 * float(v):.1f} %")


# ----------------------------------------------------------------------------------------- sections


def _table(caption: str, headers: list[str], rows: list[list[str]], note: str = "") -> dict[str, Any]:
    return {"caption": caption, "headers": headers, "rows": rows, "note": note}


FIXED_READERS_TESTS = {"paired", "clmm", "binomial", "mcnemar"}
FIXED_NOTE = "fixed readers — not a test of the AI effect"


def _analysis(results, key: str) -> Mapping[str, Any] | None:
    a = results["analyses"].get(key)
    return a if a and a.get("status") == "ok" else None


def _n_text(n: Mapping[str, Any]) -> str:
    return ", ".join(f"{v} {k.replace('levels_', '').replace('_', ' ')}" for k, v in n.items()) or "–"


def _name(a: Mapping[str, Any]) -> str:
    name = a["label"]
    if a.get("subgroup"):
        name += f" — subgroup {a['subgroup']}" + (f": {a['subgroup_level']}" if a.get("subgroup_level") else "")
    return name


def _method(a: Mapping[str, Any], s: Mapping[str, Any]) -> str:
    measure = s.get("measure") if s else a.get("test_label", a["test"])
    fixed = a.get("fixed_readers", a["test"] in FIXED_READERS_TESTS)
    if fixed and FIXED_NOTE not in measure and "fixed readers" not in measure:
        measure += f" ({FIXED_NOTE})"
    return f"{a['test']}: {measure}"


def _effect_row(a: Mapping[str, Any], level: int) -> list[str]:
    s = a.get("summary") or {}
    if a["status"] != "ok":
        return [_name(a), a["test"], "–", ("not estimable: " if a["status"] == "not_estimable" else "")
                + a.get("reason", ""), "–", "–", "–"]
    pvalues = a.get("pvalues") or []
    p = pvalues[0] if pvalues else {}
    if s and s.get("scale") == "interaction":
        return [_name(a), f"{a['test']}: {s['measure']}", _n_text(a.get("n") or {}), f"F = {num(s['estimate'])}",
                "–", pval(s.get("pvalue")), pval(p.get("adjusted")) if p.get("adjusted") is not None else "–"]
    if s:
        if s["scale"] == "share":
            est, interval = pct(s["estimate"]), _pct_ci(s["low"], s["high"])
        else:
            est, interval = num(s["estimate"]), ci(s["low"], s["high"])
        if s.get("percent_reduction") is not None:
            est += f" ({num(s['percent_reduction'])} % shorter)" if s["percent_reduction"] >= 0 else \
                f" ({num(-s['percent_reduction'])} % longer)"
        if s.get("difference_seconds") is not None:
            est += f"; {num(s['difference_seconds'])} s {ci(*s['difference_seconds_ci'])}"
    else:
        est, interval = "see below", "–"
    if len(pvalues) > 1:
        adjusted_text = "see Multiplicity"
    elif a["role"] in ("secondary", "exploratory", "subgroup_interaction") and p.get("adjusted") is not None:
        adjusted_text = pval(p["adjusted"]) + ("" if p.get("rejected") is None else
                                               (" (rejected)" if p["rejected"] else ""))
    else:
        adjusted_text = "–"
    n_text = _n_text(a.get("n") or {})
    if s.get("denominator"):
        n_text += f"; denominator: {s['denominator']}"
    return [_name(a), _method(a, s), n_text, est, interval, pval(s.get("pvalue") if s else None), adjusted_text]


def _effects_table(results, roles: tuple[str, ...], caption: str, note: str = "") -> dict[str, Any] | None:
    level = int(round(100 * results["confidence_level"]))
    rows = [_effect_row(results["analyses"][k], level) for k in results["order"]
            if results["analyses"][k]["role"] in roles]
    if not rows:
        return None
    return _table(caption, ["Endpoint", "Analysis", "n", "Estimate", f"{level} % CI", "p", "adjusted p"], rows, note)


def _labelled(labels: Mapping[str, str], arm: str) -> str:
    return labels.get(arm, f"arm {arm}")


def _model_rows(a: Mapping[str, Any]) -> list[list[str]]:
    r = a["result"]
    rows = [["Random intercepts", ", ".join(a.get("random_terms", [])) or "–"],
            ["Fixed covariates", ", ".join(a.get("covariates", [])) or "none"]]
    vc = r.get("variance_components") or {}
    if vc:
        tail = f", residual: {num(r['residual_variance'])}" if r.get("residual_variance") is not None else ""
        rows.append(["Variance components", ", ".join(f"{k}: {num(v)}" for k, v in vc.items()) + tail])
    return rows


def _time_tables(results, labels) -> list[dict]:
    tables = []
    for key, title in (("reading_time", "Active reading time per read (seconds)"),
                       ("wall_time", "Wall time per read, opening to submission (seconds)")):
        desc = results["descriptives"].get(key)
        if not desc:
            continue
        rows = []
        for arm in ARMS:
            d = desc.get(arm, {})
            rows.append([_labelled(labels, arm), str(d.get("n", 0)), num(d.get("mean")), num(d.get("sd")),
                         num(d.get("median")), ci(d.get("q1"), d.get("q3")), num(d.get("geometric_mean"))])
        tables.append(_table(title, ["Arm", "Reads", "Mean", "SD", "Median", "IQR", "Geometric mean"], rows))
    for key, title in (("reading_time.lmm", "active seconds"), ("reading_time.wall_lmm", "wall seconds (sensitivity)")):
        a = _analysis(results, key)
        if not a:
            continue
        r, s = a["result"], a["summary"]
        rows = [
            ["Ratio of geometric means X / Y", f"{num(s['estimate'])} {ci(s['low'], s['high'])}"],
            ["Time reduction, 100 (1 − ratio)", f"{num(s['percent_reduction'])} % {ci(*s['percent_reduction_ci'])}"],
            ["t, Satterthwaite df, p", f"{num(r['statistic'])}, {num(r['df'])}, {pval(r['pvalue'])}"],
        ]
        if s.get("difference_seconds") is not None:
            rows.append(["Difference X − Y in seconds (the same LMM on seconds; mean times)",
                         f"{num(s['difference_seconds'])} s {ci(*s['difference_seconds_ci'])}, Satterthwaite df "
                         f"{num(s['difference_seconds_df'])}, p = {pval(s['difference_seconds_pvalue'])}"])
        rows += _model_rows(a)
        rows[-1][1] += " (log scale)" if rows[-1][0] == "Variance components" else ""
        tables.append(_table(f"Linear mixed model on log {title}", ["Quantity", "Value"], rows,
                             "; ".join(a.get("notes", []))))
    a = _analysis(results, "reading_time.paired")
    if a:
        s = a["summary"]
        tables.append(_table(f"Reading time, paired case means ({FIXED_NOTE})", ["Quantity", "Value"], [
            ["Cases read in both arms", str(a["n"]["cases"])],
            ["Ratio of geometric means X / Y",
             f"{num(s['estimate'])} {ci(s['low'], s['high'])}, p = {pval(s['pvalue'])}"],
        ], "The readers are treated as fixed: this interval is too narrow for the effect of the AI."))
    return tables


def _score_tables(results, labels, name: str, title: str) -> list[dict]:
    desc = results["descriptives"][name]
    rows = []
    for arm in ARMS:
        d = desc.get(arm, {})
        counts = d.get("counts", {})
        n = d.get("n", 0) or 0
        rows.append([_labelled(labels, arm), str(n), num(d.get("mean")), num(d.get("sd"))]
                    + [f"{counts.get(str(k), 0)} ({pct(counts.get(str(k), 0) / n if n else None, 0)})"
                       for k in range(1, 6)])
    tables = [_table(f"{title}: distribution of expert scores",
                     ["Arm", "Scores", "Mean", "SD", "1", "2", "3", "4", "5"], rows)]
    a = _analysis(results, f"{name}.lmm")
    if a:
        r, s = a["result"], a["summary"]
        tables.append(_table(f"{title}: linear mixed model on the expert scores", ["Quantity", "Value"], [
            ["Difference X − Y (points)", f"{num(s['estimate'])} {ci(s['low'], s['high'])}"],
            ["t, Satterthwaite df, p", f"{num(r['statistic'])}, {num(r['df'])}, {pval(r['pvalue'])}"],
            ["Scores, levels", _n_text(a.get("n") or {})],
            *_model_rows(a)], "; ".join(a.get("notes", []))))
    a = _analysis(results, f"{name}.ordinal_glmm")
    if a:
        r, s = a["result"], a["summary"]
        tables.append(_table(f"{title}: cumulative-logit mixed model (ordinal sensitivity)", ["Quantity", "Value"], [
            ["Odds ratio of a higher score, X vs Y", f"{num(s['estimate'])} {ci(s['low'], s['high'])}"],
            ["t (corrected SE), Satterthwaite df, p",
             f"{num(r['statistic'])}, {num(r.get('df'))}, {pval(r['pvalue'])}"],
            ["Wald z as clmm reports it (too liberal with readers nested in arms)",
             f"SE {num(r.get('ml_se'))}, p = {pval(r.get('pvalue_z'))}"],
            *_model_rows(a)], "; ".join(a.get("notes", []))))
    a = _analysis(results, f"{name}.paired")
    if a:
        r = a["result"]
        tables.append(_table(f"{title}: paired case-level comparison ({FIXED_NOTE})", ["Quantity", "Value"], [
            ["Cases scored in both arms", str(r["n_cases"])],
            ["Mean of case means, X / Y", f"{num(r['mean_x'])} / {num(r['mean_y'])}"],
            ["Mean difference X − Y", f"{num(r['t']['mean_difference'])} {ci(r['t']['low'], r['t']['high'])}"],
            ["Paired t (df), p", f"{num(r['t']['statistic'])} ({r['t']['df']}), {pval(r['t']['pvalue'])}"],
            ["Wilcoxon signed-rank V, p", f"{num(r['wilcoxon']['statistic'])}, {pval(r['wilcoxon']['pvalue'])} "
                                          f"({r['wilcoxon']['method']}; {r['wilcoxon']['n_zero']} zero differences)"],
        ], "The readers are treated as fixed: this interval is too narrow for the effect of the AI."))
    return tables


def _preference_tables(results, labels) -> list[dict]:
    tables = []
    g = _analysis(results, "preference.glmm")
    if g:
        r, s = g["result"], g["summary"]
        tables.append(_table("Expert preference: logistic mixed model on the votes (headline)", ["Quantity", "Value"], [
            [f"P(an expert prefers the {_labelled(labels, 'X')} report)",
             f"{pct(s['estimate'])} {_pct_ci(s['low'], s['high'])}"],
            ["Test of ½: t (corrected SE), Satterthwaite df, p",
             f"{num(r['statistic'])}, {num(r['df'])}, {pval(r['pvalue'])}"],
            ["Denominator", s.get("denominator", "")],
            [f"Votes for {_labelled(labels, 'X')} / {_labelled(labels, 'Y')} / neither",
             f"{r['n_treatment']} / {r['n_reference']} / {r['n_ties']}"],
            ["Variance components (logit scale)", ", ".join(f"{k}: {num(v)}" for k, v in
                                                            r["variance_components"].items())],
        ], "; ".join(["One estimand: the probability that an expert who prefers one of the two reports prefers the X "
                      "report, for a typical case, expert and pair of readers; its interval and test are of that "
                      "probability", *g.get("notes", [])])))
    a = _analysis(results, "preference.binomial")
    if not a:
        return tables
    r = a["result"]
    n = r["n_cases"]
    decisive = r["wins"] + r["losses"]
    min_votes = r.get("min_votes", 1)
    rows = [
        ["Cases with a vote", str(n)],
        [f"Majority preferred {_labelled(labels, 'X')}", f"{r['wins']} of {n} cases ({pct(r['wins'] / n)}) "
                                                         f"{_pct_ci(r['low'], r['high'])} (Wilson; no test)"],
        [f"Majority preferred {_labelled(labels, 'Y')}", f"{r['losses']} of {n} cases ({pct(r['losses'] / n)})"],
        ["No majority", f"{r['ties']} of {n} cases ({pct(r['ties'] / n)}), of which {r.get('too_few_votes', 0)} "
                        f"with fewer than {min_votes} votes"],
        [f"Share of decisive cases preferring {_labelled(labels, 'X')}, exact binomial against ½",
         f"{r['wins']} of {decisive} decisive cases: {pct(r['share_decisive'])} "
         f"{_pct_ci(r['decisive_low'], r['decisive_high'])} (Clopper–Pearson), p = {pval(r['pvalue'])}"],
        ["Ties split ½–½ (sensitivity), score test against ½",
         f"{pct(r['share_ties_split'])} of {n} cases {_pct_ci(r['ties_split_low'], r['ties_split_high'])}, "
         f"p = {pval(r['ties_split_pvalue'])}"],
        [f"Votes for {_labelled(labels, 'X')}, case-clustered CI (no test)",
         f"{r['votes_all']['votes_treatment']} of {r['votes_all']['votes']} votes: {pct(r['votes_all']['share'])} "
         f"{_pct_ci(r['votes_all']['low'], r['votes_all']['high'])}"],
        ["Experts per case", f"{r['experts_per_case_min']}–{r['experts_per_case_max']}"],
    ]
    if r.get("position"):
        p = r["position"]
        rows.append(["Position bias: left report chosen", f"{p['left_chosen']} of {p['votes']} "
                                                          f"({pct(p['share_left'])}), p = {pval(p['pvalue'])}"])
    tables.append(_table(f"Expert preference by case majority ({FIXED_NOTE})", ["Quantity", "Value"], rows,
                         f"A case's majority is the strict majority of its votes, from at least {min_votes} votes; "
                         "each row states its own denominator, and each test is of the share on its row."))
    return tables


def _glmm_cell(fit: Mapping[str, Any] | None) -> str:
    if not fit:
        return "–"
    if fit.get("status") != "ok":
        return "not estimable: " + fit.get("reason", "")[:80]
    r = fit["result"]
    return (f"OR {num(r['odds_ratio'])} {ci(*r['odds_ratio_confidence_interval'])}, p = {pval(r['pvalue'])} "
            f"({fit['n_reads']} reads)")


def _detection_tables(results, labels) -> list[dict]:
    tables = []
    g = _analysis(results, "detection.glmm")
    if g:
        res = g["result"]
        rows = [["all findings (finding effect)", _glmm_cell(res["pooled"].get("sensitivity")),
                 _glmm_cell(res["pooled"].get("specificity"))]]
        for finding, by in res["findings"].items():
            rows.append([finding, _glmm_cell(by.get("sensitivity")), _glmm_cell(by.get("specificity"))])
        tables.append(_table("Detection: logistic mixed models of a correct call, X vs Y (random "
                             + ", ".join(res["random"]) + ")",
                             ["Finding", "Sensitivity (diseased reads)", "Specificity (non-diseased reads)"], rows,
                             "Odds ratio of a correct call for a typical case and reader; t test with the "
                             "small-sample corrected SE and Satterthwaite df. The pooled rows are the planned tests."))
    a = _analysis(results, "detection.mcnemar")
    if a:
        rows = []
        for f in a["result"]["findings"]:
            by_arm = {x["arm"]: x for x in f["arms"]}
            sens = [f"{pct(by_arm[arm]['sensitivity']['estimate'])} "
                    f"{_pct_ci(by_arm[arm]['sensitivity']['low'], by_arm[arm]['sensitivity']['high'])}"
                    if arm in by_arm else "–" for arm in ARMS]
            spec = [f"{pct(by_arm[arm]['specificity']['estimate'])} "
                    f"{_pct_ci(by_arm[arm]['specificity']['low'], by_arm[arm]['specificity']['high'])}"
                    if arm in by_arm else "–" for arm in ARMS]
            ms, mp = f.get("mcnemar_sensitivity"), f.get("mcnemar_specificity")
            rows.append([f["finding"], *sens, pval(ms["pvalue"]) if ms else "–", *spec,
                         pval(mp["pvalue"]) if mp else "–"])
        unpaired = a["result"].get("unpaired_reads", 0)
        tables.append(_table(f"Detection by arm (reader calls vs the reference standard; McNemar: {FIXED_NOTE})",
                             ["Finding", f"Sensitivity {_labelled(labels, 'X')}",
                              f"Sensitivity {_labelled(labels, 'Y')}", "McNemar p",
                              f"Specificity {_labelled(labels, 'X')}", f"Specificity {_labelled(labels, 'Y')}",
                              "McNemar p"], rows,
                             f"Wilson intervals; McNemar with continuity correction on paired reads (pairing by "
                             f"{a['result'].get('pairing', 'case')}, decided per finding and case; "
                             f"{unpaired} reads without a pair left out)."))
    m = _analysis(results, "detection.mrmc")
    if m:
        rows = []
        for finding, foms in m["result"]["findings"].items():
            for fom, r in foms.items():
                if r.get("status") == "ok":
                    rows.append([finding, fom, num(r["difference"]), pval(r["pvalue"])])
                else:
                    rows.append([finding, fom, "not estimable", r.get("reason", "")])
        tables.append(_table("Detection, Obuchowski–Rockette (Hillis df), random readers and cases",
                             ["Finding", "Figure of merit", "Difference X − Y", "p"], rows))
    return tables


def _share_cell(acc: Mapping[str, Any], measure: str) -> str:
    p = acc[measure]
    return f"{pct(p['estimate'])} {_pct_ci(p['low'], p['high'])}"


def _auc_table(results) -> list[dict]:
    a = _analysis(results, "ai_auc.delong")
    if not a:
        return []
    threshold = a["result"].get("threshold")
    rows = []
    for finding, r in a["result"]["findings"].items():
        acc = r.get("at_threshold")
        sens, spec = (_share_cell(acc, m) if acc and acc[m]["n"] else "–" for m in ("sensitivity", "specificity"))
        if r["status"] == "ok":
            res = r["result"]
            rows.append([finding, num(res["auc"]), ci(res["low"], res["high"]), sens, spec, str(res["n_positive"]),
                         str(res["n_negative"])])
        else:
            rows.append([finding, "not estimable", r["reason"], sens, spec, "–", "–"])
    at = f"at score ≥ {threshold:g}" if threshold is not None else "at the threshold"
    return [_table("AI finding scores against the reference standard",
                   ["Finding", "AUC", "DeLong CI", f"Sensitivity {at}", f"Specificity {at}", "Present", "Absent"], rows,
                   "Sensitivity and specificity with Wilson intervals.")]


def _icc_cell(r: Mapping[str, Any] | None) -> str:
    return f"{num(r['estimate'])} {ci(r['low'], r['high'])}" if r else "–"


def _agreement_table(results) -> list[dict]:
    rows = []
    headers = ["Scores", "Fleiss κ", "Krippendorff α", "ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "Design"]
    for name, title in (("quality", "Quality score"), ("radpeer", "RADPEER score"), ("preference", "Preference")):
        a = results["agreement"].get(name, {})
        if a.get("status") != "ok":
            rows.append([title, "not estimable: " + a.get("reason", ""), "–", "–", "–", "–", "–"])
            continue
        r = a["result"]
        if name == "preference":
            alpha = a.get("krippendorff_nominal")
            rows.append([title, f"{num(r['kappa'])} (p {pval(r['pvalue'])})",
                         f"{num(alpha['alpha'])} (nominal)" if alpha else "–", "–", "–", "–",
                         f"{r['n_items']} cases × {r['n_raters']} experts"])
            continue
        alpha = r.get("krippendorff_ordinal") or {}
        same = a.get("same_raters", True)
        design = f"{r['n_items']} reports × {r['n_raters']} experts" + ("" if same else " (positions)")
        if alpha.get("alpha") is not None:
            design += f"; α on {alpha['n_items']} reports"
        rows.append([title, f"{num(r['fleiss']['kappa'])} (p {pval(r['fleiss']['pvalue'])})",
                     f"{num(alpha.get('alpha'))} (ordinal)" if alpha.get("alpha") is not None else "–",
                     _icc_cell(r.get("icc1")),
                     _icc_cell(r["icc2"]) if same else "– (raters differ)",
                     _icc_cell(r["icc3"]) if same else "– (raters differ)", design])
    return [_table("Agreement between experts", headers, rows,
                   "Fleiss' κ treats the scores as unordered categories; Krippendorff's α (ordinal) respects their "
                   "order and uses every report with two or more scores. ICC(2,1) and ICC(3,1) need the same experts "
                   "on every report; where the experts of a report are assigned per report, ICC(1,1) is the one "
                   "to read.")]


def _blinding_table(results, labels, assisted: str | None) -> list[dict]:
    b = results.get("blinding", {})
    title = "Which report was written with AI assistance? The experts' guesses"
    if b.get("status") == "withheld":
        return [_table(title, ["", ""], [["Withheld", "shown after unblinding: where experts can tell, the direction "
                                                      "of their guesses would tell which arm code is which"]])]
    if b.get("status") == "not_asked":
        return [_table(title, ["", ""], [["Not asked", "the trial did not ask the experts this question"]])]
    if b.get("status") != "ok" or assisted is None:
        return [_table(title, ["", ""], [["Not estimable", b.get("reason", "the arms are not revealed")]])]
    # the run computed the indices on the hypothesis that b["hypothesis"] is the AI-assisted arm; turn them round
    # if the revealed mapping says otherwise
    sign = 1 if b["hypothesis"] == assisted else -1
    rows = []
    for arm in ARMS:
        g = b["by_left_arm"].get(arm)
        if not g:
            continue
        low, high = sorted((sign * g["ci"][0], sign * g["ci"][1]))
        c = g["counts"]
        rows.append([f"{_labelled(labels, arm)} report on the left", str(g["n"]),
                     f"{c['named_left']} / {c['named_right']} / {c['unsure']}",
                     f"{num(sign * g['estimate'])} ({num(low)} to {num(high)})"])
    level = int(round(100 * results["confidence_level"]))
    return [_table(title, ["Pairs", "Guesses", "Named left / named right / unsure", f"Bang's index ({level} % CI)"],
                   rows)]


def _automation_table(results, labels) -> list[dict]:
    a = results.get("automation_bias", {})
    if a.get("status") == "withheld":
        return [_table("Automation bias (how much of the AI draft was kept)", ["", ""],
                       [["Withheld", a["reason"]]])]
    if a.get("status") != "ok":
        return [_table("Automation bias (how much of the AI draft was kept)", ["", ""],
                       [["Not estimable", a.get("reason", "")]])]
    k = a["kept_share"]
    rows = [["Arm with drafts", _labelled(labels, a["arm"])], ["Reports written from a draft", str(a["reports"])],
            ["Share of draft kept: mean, median [IQR]", f"{pct(k['mean'])}, {pct(k['median'])} "
                                                        f"{_pct_ci(k['q1'], k['q3'])}"],
            ["Draft kept unchanged", f"{a['unchanged']} ({pct(a['unchanged'] / a['reports'])})"],
            ["At least 90 % of the draft kept",
             f"{a['kept_at_least_90']} ({pct(a['kept_at_least_90'] / a['reports'])})"]]
    if a.get("kept_share_vs_quality"):
        q = a["kept_share_vs_quality"]
        rows.append(["Kept share vs quality score (Spearman ρ)", f"{num(q['spearman_rho'])}, p = {pval(q['pvalue'])}, "
                                                                 f"n = {q['n']}"])
    rows += [[f"Reader {r}", f"{v['reports']} reports, mean kept {pct(v['mean_kept_share'])}"]
             for r, v in a["per_reader"].items()]
    return [_table("Automation bias (how much of the AI draft was kept)", ["Quantity", "Value"], rows)]


FAMILY_TITLES = (("secondary", "Key secondary family"), ("exploratory", "Exploratory family"),
                 ("subgroup", "Subgroup interaction family"))


def _multiplicity_tables(results) -> list[dict]:
    tables = []
    mult = results["multiplicity"]
    primary = mult.get("primary")
    if primary:
        tables.append(_table(f"Primary test at α = {primary['alpha']}", ["Test", "p", "rejected"], [
            [primary["name"], pval(primary["pvalue"]) + ("" if primary["estimable"] else " (not estimable: p = 1)"),
             "yes" if primary["rejected"] else "no"]]))
    for family, title in FAMILY_TITLES:
        m = mult.get(family)
        if not m:
            continue
        estimable = m.get("estimable") or [True] * len(m["pvalues"])
        rows = [[n, pval(p) + ("" if ok else " (not estimable: p = 1)"), pval(a), "yes" if r else "no"]
                for n, p, a, r, ok in zip(m["names"], m["pvalues"], m["adjusted"], m["rejected"], estimable)]
        note = ""
        if m.get("gate"):
            note = (f"Tested only if {m['gate']}: " + ("the gate is open." if m.get("tested", True) else
                                                       "it was not, so nothing in this family is rejected."))
        tables.append(_table(f"{title}: {m['method']} adjustment at α = {m['alpha']}",
                             ["Test", "p", "adjusted p", "rejected"], rows, note))
    return tables


def _subgroup_tables(results) -> list[dict]:
    tables = []
    level = int(round(100 * results["confidence_level"]))
    for sub in results.get("subgroups", []):
        rows = [_effect_row(results["analyses"][k], level) for k in results["order"]
                if results["analyses"][k].get("subgroup") == sub["name"]]
        if not rows:
            continue
        levels = "; ".join(f"{lv['label']}: {lv['cases']} cases" for lv in sub.get("levels", []))
        note = sub.get("description", "")
        if levels:
            note += f" ({levels})"
        if sub.get("status") != "ok":
            note += f" Not estimable: {sub.get('reason', '')}"
        tables.append(_table(f"Subgroup {sub['name']}", ["Endpoint", "Analysis", "n", "Estimate", f"{level} % CI",
                                                          "p", "adjusted p"], rows, note.strip()))
    return tables


EVENT_NAMES = {"draft_unavailable": "No ready AI draft (case)", "read_not_submitted": "Read not submitted",
               "report_corrected": "Report corrected", "wrong_arm": "Read in the wrong arm"}   # as stats.plan's


def _estimand_tables(results, labels) -> tuple[list[dict], list[str]]:
    """The intercurrent events counted, and each endpoint's estimand as the run applied it (results schema ≥ 3)."""
    est = results.get("estimands")
    if not est:
        return [], ["This run predates estimands in the results: its rows were analysed as recorded."]
    arms = ARMS
    rows = []
    for event, e in est["events"].items():
        if not e.get("determinable", True):
            rows.append([EVENT_NAMES.get(event, event), "not determinable", "–", "–", e.get("note", "")])
            continue
        count = f"{e['cases']} cases" if e.get("unit") == "case" else f"{e['n']} reads ({e['cases']} cases)"
        per_arm = [str((e.get("reads") or {}).get(a, "–")) for a in arms]
        rows.append([EVENT_NAMES.get(event, event), count, *per_arm, e["label"]])
    tables = [_table("Intercurrent events in the data", ["Event", "Count", *(f"reads, {_labelled(labels, a)}"
                                                                           for a in arms), "Definition"], rows)]
    endpoint_rows = []
    for endpoint, summary in est.get("endpoints", {}).items():
        if not summary.get("specified"):
            endpoint_rows.append([endpoint, "as recorded (no estimand in the plan)", "–", "–", "–",
                                  f"{summary['rows_before']} → {summary['rows_after']}"])
            continue
        strategies = "; ".join(f"{EVENT_NAMES.get(e, e)}: {v['strategy'].replace('_', ' ')}"
                               for e, v in summary["strategies"].items())
        done = []
        for step in summary.get("applied", []):
            left = sum((step.get("rows_left_out") or {}).values())
            moved = sum((step.get("rows_relabelled") or {}).values())
            done.append(f"{step['event']} ({step['strategy'].replace('_', ' ')}): {left} rows left out"
                        + (f", {moved} relabelled" if moved else ""))
        endpoint_rows.append([endpoint, summary["population_label"], summary["variable_label"],
                              summary.get("summary_measure", ""), strategies,
                              f"{summary['rows_before']} → {summary['rows_after']}"
                              + (f" ({'; '.join(done)})" if done else "")])
    tables.append(_table("Estimands (ICH E9(R1)) as applied", ["Endpoint", "Population", "Variable",
                                                               "Summary measure", "Intercurrent events: strategy",
                                                               "Rows analysed"], endpoint_rows))
    notes = [f"Not in the data yet: {text}." for text in est.get("not_in_data", {}).values()]
    return tables, notes


def _tipping_tables(results, labels) -> tuple[list[dict], list[str]]:
    tp = results.get("tipping_point")
    if not tp or tp.get("status") == "not_planned":
        return [], ["No tipping-point analysis was planned."]
    if tp.get("status") != "ok":
        return [], [f"Tipping point not computed: {tp.get('reason', '')}"]
    fav = tp["favoured"]
    other = next(a for a in ARMS if a != fav)
    unit = tp["scale"]
    rows = [["Primary analysis", tp["analysis"]],
            ["Estimate (SE, df)", f"{num(tp['estimate'])} ({num(tp['se'])}, {num(tp['df'])})"],
            ["Missing outcomes (of expected)", ", ".join(f"{_labelled(labels, a)}: {tp['missing'][a]} of "
                                                        f"{tp['expected'][a]}" for a in ARMS)],
            ["Change of the estimate per unit shift", ", ".join(f"{_labelled(labels, a)}: {num(tp['weights'][a], 4)}"
                                                               for a in ARMS)],
            ["Conclusion at α = " + str(tp["alpha"]), "significant" if tp["significant"] else "not significant"]]
    if tp.get("shift") is not None:
        ratio = f" (× {num(tp['shift_ratio'])})" if tp.get("shift_ratio") is not None else ""
        rows.append([f"Tipping point: shift of the missing outcomes of {_labelled(labels, fav)}",
                     f"{num(tp['shift'])} {unit}{ratio}"])
    if tp.get("shift_both") is not None:
        rows.append([f"… of {_labelled(labels, fav)} and the opposite shift of {_labelled(labels, other)}",
                     f"{num(tp['shift_both'])} {unit}"])
    if tp.get("note"):
        rows.append(["Note", tp["note"]])
    grid = [[num(g["shift"]), num(g["estimate"]), pval(g["pvalue"]), "yes" if g["significant"] else "no"]
            for g in tp.get("grid", [])]
    tables = [_table("δ-adjusted tipping point for missing outcomes", ["", ""], rows)]
    if grid:
        tables.append(_table(f"Shift of the missing outcomes of {_labelled(labels, fav)} ({unit})",
                             ["shift", "estimate", "p", "significant"], grid))
    direction = ("towards the other arm, until the interval contains 0" if tp["significant"] else
                 f"in favour of {_labelled(labels, fav)}, until the interval excludes 0")
    return tables, [f"The missing outcomes are assumed to lie, on average, a shift δ from what the model predicts "
                    f"for them (missing at random is δ = 0); δ moves {direction}. The SE and df are the "
                    f"primary's. {tp.get('method', '')}."]


def _history_table(history: Mapping[str, Any] | None) -> tuple[list[dict], list[str]]:
    if not history:
        return [], []
    rows = [[f"v{v['version']}" + (" (this run)" if v.get("used_by_this_run") else ""),
             v.get("frozen_at") or "draft (not frozen)", v.get("frozen_by") or "–",
             (v.get("sha256") or "–")[:16] + ("…" if v.get("sha256") else ""),
             "; ".join(v.get("flags") or []) or "–"] for v in history["versions"]]
    notes = [f"Database lock: {history.get('locked_at') or 'not locked'}; unblinding: "
             f"{history.get('unblinded_at') or 'not unblinded'}."]
    if history.get("used_version_flagged"):
        notes.insert(0, "The plan version this run executed was frozen after the database lock or after masked "
                        "results had been seen: it was not written before the data were known.")
    return [_table("Every version of the analysis plan", ["Version", "Frozen (UTC)", "By", "SHA-256", "Flags"],
                   rows)], notes


def _interim_section(interim: Mapping[str, Any] | None, primary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Every interim look (stats.selectors.interim_for_report) and, with planned efficacy looks, the final look's
    nominal level from the spending function, and the primary judged by it."""
    if not interim or (not interim.get("looks") and not interim.get("planned")):
        return None
    rows = [[look["number"], f"{look['kind_label']} ({look['sequence']})", look["performed_at"] or "–",
             f"{look['information_fraction']:.3f}",
             "unplanned" if look["planned_fraction"] is None else f"{look['planned_fraction']:g}",
             f"v{look['plan_version']}", look["dataset_sha256"][:16] + "…", look["outcome"] or "–"]
            for look in interim.get("looks", [])]
    tables = [_table("Every interim look", ["#", "Kind", "Taken (UTC)", "Information fraction", "Planned at", "Plan",
                                            "Dataset SHA-256", "Outcome"], rows)] if rows else []
    notes = [] if rows else ["No interim look was taken."]
    final = interim.get("final")
    if final:
        level = final["nominal_p"]
        fractions = ", ".join(f"{f:.3f}" for f in final["fractions"])
        note = (f"Efficacy looks: {final['looks_taken']} taken; the final analysis is the last look, at the nominal "
                f"two-sided level {level:.6g} (z boundary {final['z']:.4f}; Lan–DeMets {final['spending']} spending "
                f"of α = {final['alpha']:g} at information fractions {fractions}).")
        if primary and primary.get("status") == "ok" and primary.get("pvalues"):
            p = primary["pvalues"][0]["pvalue"]
            if p is not None:
                note += (f" The primary's p = {pval(p)} is " + ("below" if p < level else "not below")
                         + " it: the primary is " + ("rejected" if p < level else "not rejected")
                         + " at the final look. (The families of key secondaries above are tested at the plan's α.)")
        notes.append(note)
    return {"id": "interim", "title": "Interim looks", "tables": tables, "notes": notes}


def build_report(results: Mapping[str, Any], *, labels: Mapping[str, str], meta: Mapping[str, Any],
                 history: Mapping[str, Any] | None = None, interim: Mapping[str, Any] | None = None,
                 assisted: str | None = None) -> dict[str, Any]:
    """Plain data for a template: meta rows, the flow and the sections (each a title, tables, notes).

    `history` is the trial's plan history (stats.provenance.plan_history), shown with its flags; `interim` the
    trial's interim looks (stats.selectors.interim_for_report), listed with the final look's nominal level."""
    level = int(round(100 * results["confidence_level"]))
    alpha = results["alpha"]
    primary = next((results["analyses"][k] for k in results["order"] if results["analyses"][k]["role"] == "primary"),
                   None)
    verdict = ""
    if primary and primary["status"] == "ok" and primary["pvalues"]:
        p = primary["pvalues"][0]["pvalue"]
        verdict = (f"Primary endpoint: p = {pval(p)}, " + ("significant" if p is not None and p <= alpha
                                                            else "not significant") + f" at α = {alpha}.")
    elif primary:
        verdict = f"Primary endpoint not estimable ({primary.get('reason', '')}): it counts as not rejected."
    mult = results["multiplicity"]
    secondary_note = "Holm-adjusted p"
    if mult.get("gatekeeping"):
        secondary_note = (f"{(mult.get('secondary') or {}).get('method', 'holm')}-adjusted p; tested only if the "
                          "primary is rejected")
    fixed = ("Analyses marked “fixed readers” treat the readers as fixed: with readers randomized to the arms they "
             "are not tests of the AI effect, and their intervals are too narrow for it.")
    sections = [
        {"id": "primary", "title": "Primary endpoint", "tables": [t for t in [
            _effects_table(results, ("primary",), "Primary analysis")] if t], "notes": [verdict] if verdict else []},
        {"id": "secondary", "title": "Key secondary endpoints", "tables": [t for t in [
            _effects_table(results, ("secondary",), f"Key secondary analyses ({secondary_note})")] if t], "notes": []},
        {"id": "sensitivity", "title": "Sensitivity analyses", "tables": [t for t in [
            _effects_table(results, ("sensitivity",), "Sensitivity analyses (not adjusted)")] if t], "notes": [fixed]},
        {"id": "exploratory", "title": "Exploratory analyses", "tables": [t for t in [
            _effects_table(results, ("exploratory",), "Exploratory analyses (Benjamini–Hochberg-adjusted p)")]
            if t], "notes": []},
        {"id": "subgroups", "title": "Subgroups", "tables": _subgroup_tables(results), "notes": [
            "Every level of a subgroup is analysed by the endpoint's main test; the levels' p-values are descriptive. "
            "The test of heterogeneity is the treatment × subgroup interaction (F test, Satterthwaite denominator df), "
            "adjusted in a family of its own."]},
        {"id": "time", "title": "Reading time", "tables": _time_tables(results, labels), "notes": [],
         "plot": "reading_time"},
        {"id": "quality", "title": "Report quality", "tables": _score_tables(results, labels, "quality", "Quality"),
         "notes": [], "plot": "quality"},
        {"id": "radpeer", "title": "RADPEER-based score",
         "tables": _score_tables(results, labels, "radpeer", "RADPEER"),
         "notes": ["RADPEER " + ", ".join(f"{code} → {score}" for code, score in radpeer_scale.SCORE.items())
                   + " (higher is better)."]},
        {"id": "preference", "title": "Expert preference", "tables": _preference_tables(results, labels), "notes": [],
         "plot": "preference"},
        {"id": "detection", "title": "Detection by arm", "tables": _detection_tables(results, labels), "notes": []},
        {"id": "ai", "title": "AI finding scores", "tables": _auc_table(results), "notes": []},
        {"id": "agreement", "title": "Agreement between experts", "tables": _agreement_table(results), "notes": []},
        {"id": "automation", "title": "Automation bias", "tables": _automation_table(results, labels), "notes": []},
        {"id": "blinding", "title": "Blinding of the experts", "tables": _blinding_table(results, labels, assisted),
         "notes": ["Bang's blinding index per group of pairs (by the true arm of the report shown on the left): 1, "
                   "every expert named the report written with an AI draft; 0, no better than chance (or all "
                   "unsure); −1, every one named the other report. Wald intervals (Bang 2004)."]},
        {"id": "multiplicity", "title": "Multiplicity", "tables": _multiplicity_tables(results), "notes": [
            "The primary is tested at α; a planned test that could not be estimated counts as p = 1 and stays in its "
            "family."]},
        {"id": "forest", "title": "Forest plot", "tables": [], "notes": [
            f"Point estimates with {level} % confidence intervals, arm X relative to arm Y; one row per subgroup "
            "level."], "plot": "forest"},
    ]
    est_tables, est_notes = _estimand_tables(results, labels)
    tip_tables, tip_notes = _tipping_tables(results, labels)
    hist_tables, hist_notes = _history_table(history)
    sections[3:3] = [
        {"id": "estimands", "title": "Estimands and intercurrent events", "tables": est_tables, "notes": est_notes},
        {"id": "missing", "title": "Missing outcomes: tipping point", "tables": tip_tables, "notes": tip_notes},
    ]
    if history:
        # a run of a plan amended after the lock or after masked results says so before anything else
        section = {"id": "plan-history", "title": "Analysis plan versions", "tables": hist_tables, "notes": hist_notes}
        sections.insert(0 if history.get("used_version_flagged") else len(sections), section)
    interim_section = _interim_section(interim, primary)
    if interim_section:
        sections.insert(1, interim_section)
    flow = results["flow"]
    flow_arms = [{"arm": arm, "label": _labelled(labels, arm), **flow["arms"].get(arm, {})} for arm in ARMS]
    draft = (results.get("estimands") or {}).get("events", {}).get("draft_unavailable", {})
    if not draft.get("determinable"):
        ai_unavailable = "whether a draft was unavailable cannot be told from these data"
    else:
        strategy = ((results.get("estimands") or {}).get("endpoints", {}).get(primary["endpoint"], {})
                    .get("strategies", {}).get("draft_unavailable", {}).get("strategy", "treatment policy")
                    if primary else "treatment policy")
        ai_unavailable = (f"cases whose AI draft was unavailable (failed or late): {draft['cases']}, handled in the "
                          f"primary by the {strategy.replace('_', ' ')} strategy")
    return {"meta": list(meta.items()), "sections": sections, "flow": flow, "flow_arms": flow_arms,
            "ai_unavailable": ai_unavailable,
            "level": level, "labels": dict(labels), "plot_titles": PLOT_TITLES}


# -------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def _plain_log(axis) -> None:
    """Log axis labelled with plain numbers (0.5, 1, 2, 50, 100) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


COLOURS = {"X": "#3b6ea5", "Y": "#c7793b"}


def plot_reading_time(results, labels) -> bytes:
    desc = results["descriptives"]["reading_time"]
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    stats, names = [], []
    for arm in ARMS:
        d = desc.get(arm, {})
        if not d.get("n"):
            continue
        stats.append({"med": d["median"], "q1": d["q1"], "q3": d["q3"], "whislo": d["whisker_low"],
                      "whishi": d["whisker_high"], "mean": d.get("geometric_mean", d["mean"]), "fliers": [],
                      "label": f"{_labelled(labels, arm)}\n(n = {d['n']})"})
        names.append(arm)
    if stats:
        boxes = ax.bxp(stats, showmeans=True, patch_artist=True, widths=0.5)
        for patch, arm in zip(boxes["boxes"], names):
            patch.set_facecolor(COLOURS[arm])
            patch.set_alpha(0.55)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
    ax.set_ylabel("Active reading time (s, log scale)")
    ax.set_title("Reading time by arm (box: IQR; line: median; marker: geometric mean)", fontsize=9)
    return _png(fig)


def plot_quality(results, labels) -> bytes:
    desc = results["descriptives"]["quality"]
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    width = 0.38
    for i, arm in enumerate(ARMS):
        d = desc.get(arm, {})
        n = d.get("n", 0) or 0
        counts = [d.get("counts", {}).get(str(k), 0) for k in range(1, 6)]
        shares = [c / n if n else 0 for c in counts]
        ax.bar([k + (i - 0.5) * width for k in range(1, 6)], shares, width=width, color=COLOURS[arm], alpha=0.8,
               label=f"{_labelled(labels, arm)} (n = {n}, mean {num(d.get('mean'))})")
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("Quality score (1 = very poor, 5 = excellent)")
    ax.set_ylabel("Share of scores")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Quality distribution by arm", fontsize=9)
    return _png(fig)


SCALES = {
    "difference": ("Difference X − Y (points)", 0.0, False),
    "ratio": ("Ratio X / Y (time)", 1.0, True),
    "odds_ratio": ("Odds ratio X vs Y (ordinal)", 1.0, True),
    "share": ("Probability / share preferring X (½ = no preference)", 0.5, False),
}


def forest_rows(results) -> dict[str, list[tuple[str, float, float, float]]]:
    """Estimates with intervals by scale, in plan order, one row per subgroup level: what the forest plot draws."""
    out: dict[str, list] = {k: [] for k in SCALES}
    for key in results["order"]:
        a = results["analyses"][key]
        s = a.get("summary")
        if a["status"] != "ok" or not s or s.get("scale") not in SCALES or s.get("low") is None \
                or s.get("high") is None:
            continue
        name = f"{a['endpoint'].replace('_', ' ')} ({a['test']})"
        if a.get("subgroup"):
            name += f", {a['subgroup']}" + (f": {a['subgroup_level']}" if a.get("subgroup_level") else "")
        out[s["scale"]].append((name, s["estimate"], s["low"], s["high"]))
    return {k: v for k, v in out.items() if v}


def plot_forest(results, labels) -> bytes:
    rows = forest_rows(results)
    panels = list(rows.items()) or [("difference", [])]
    height = 0.9 + sum(0.32 * len(v) + 0.7 for _, v in panels)
    fig = _figure(7.5, height)
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": [max(1, len(v)) + 1.5
                                                                                       for _, v in panels]})
    for ax, (scale, items) in zip(axes[:, 0], panels):
        title, null, log = SCALES[scale]
        ys = list(range(len(items)))[::-1]
        for y, (_, est, low, high) in zip(ys, items):
            ax.plot([low, high], [y, y], color="#333333", lw=1.4)
            ax.plot([est], [y], "s", color="#3b6ea5", ms=6)
        ax.axvline(null, color="#999999", ls="--", lw=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([i[0] for i in items], fontsize=7)
        if log:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_xlabel(title, fontsize=8)
        ax.set_ylim(-0.8, len(items) - 0.2)
    fig.suptitle(f"{_labelled(labels, 'X')} relative to {_labelled(labels, 'Y')}", fontsize=9)
    return _png(fig)


def plot_preference(results, labels) -> bytes:
    """Case majorities as shares of all cases (no null line: ties are in the denominator), and the headline
    P(an expert prefers X) with its interval against ½ (the GLMM's own estimand)."""
    fig = _figure(6.0, 2.4)
    ax = fig.subplots()
    a = results["analyses"].get("preference.binomial")
    g = results["analyses"].get("preference.glmm")
    ticks = []
    if a and a["status"] == "ok":
        r = a["result"]
        n = r["n_cases"]
        parts = [(r["wins"], COLOURS["X"], f"{_labelled(labels, 'X')} preferred"),
                 (r["ties"], "#bbbbbb", "no majority"),
                 (r["losses"], COLOURS["Y"], f"{_labelled(labels, 'Y')} preferred")]
        left = 0.0
        for count, colour, label in parts:
            share = count / n
            ax.barh([1], [share], left=[left], height=0.5, color=colour,
                    label=f"{label}: {count} of {n} cases ({100 * share:.1f} %)")
            left += share
        ticks.append((1, f"case majorities\n(all {n} cases)"))
    if g and g["status"] == "ok" and g["summary"].get("low") is not None and g["summary"].get("high") is not None:
        s = g["summary"]
        ax.errorbar([s["estimate"]], [0], xerr=[[s["estimate"] - s["low"]], [s["high"] - s["estimate"]]], fmt="o",
                    color="black", capsize=3, ms=4)
        ax.plot([0.5, 0.5], [-0.35, 0.35], color="#666666", ls="--", lw=1)
        ticks.append((0, "P(expert prefers X)\n(decisive votes)"))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, 1.5)
    ax.set_yticks([t for t, _ in ticks])
    ax.set_yticklabels([lab for _, lab in ticks], fontsize=7)
    ax.set_xlabel("Share or probability (dashed: ½, the null of the GLMM's test)", fontsize=8)
    if a and a["status"] == "ok":
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.4), ncol=3, frameon=False)
    return _png(fig)


def plots(results: Mapping[str, Any], *, labels: Mapping[str, str]) -> dict[str, bytes]:
    return {"reading_time": plot_reading_time(results, labels), "quality": plot_quality(results, labels),
            "forest": plot_forest(results, labels), "preference": plot_preference(results, labels)}


def plot(name: str, results: Mapping[str, Any], *, labels: Mapping[str, str]) -> bytes:
    return {"reading_time": plot_reading_time, "quality": plot_quality, "forest": plot_forest,
            "preference": plot_preference}[name](results, labels)
