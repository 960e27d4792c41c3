"""The trial report from a run's results (no Django): sections of formatted tables, the CONSORT-style flow, plots.

`build_report` turns stored results into a plain structure (titles, tables of formatted cells,
notes) that the page template and the self-contained download render alike; `plots` draws the
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
    "preference": "Expert preference (case majority)",
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


def _effect_row(a: Mapping[str, Any], level: int) -> list[str]:
    s = a.get("summary") or {}
    n = a.get("n") or {}
    n_text = ", ".join(f"{v} {k.replace('levels_', '').replace('_', ' ')}" for k, v in n.items()) or "–"
    if a["status"] != "ok":
        return [a["label"] + (f" ({a['subgroup']})" if a.get("subgroup") else ""), a["test"], "–",
                "not estimable: " + a.get("reason", ""), "–", "–", "–"]
    p = (a.get("pvalues") or [{}])[0] if a.get("pvalues") else {}
    if s:
        if s["scale"] == "share":
            est, interval = pct(s["estimate"]), _pct_ci(s["low"], s["high"])
        else:
            est, interval = num(s["estimate"]), ci(s["low"], s["high"])
        if s.get("percent_reduction") is not None:
            est += f" ({num(s['percent_reduction'])} % shorter)" if s["percent_reduction"] >= 0 else \
                f" ({num(-s['percent_reduction'])} % longer)"
        measure = s["measure"]
    else:
        est, interval, measure = "see below", "–", a["test_label"]
    adjusted = p.get("adjusted")
    if len(a.get("pvalues") or []) > 1:
        adjusted_text = "see Multiplicity"
    else:
        adjusted_text = pval(adjusted) if adjusted is not None and a["role"] != "primary" else "–"
    return [a["label"] + (f" — subgroup {a['subgroup']}" if a.get("subgroup") else ""),
            f"{a['test']}: {measure}", n_text, est, interval, pval(s.get("pvalue") if s else None), adjusted_text]


def _effects_table(results, roles: tuple[str, ...], caption: str, note: str = "") -> dict[str, Any] | None:
    level = int(round(100 * results["confidence_level"]))
    rows = [_effect_row(results["analyses"][k], level) for k in results["order"]
            if results["analyses"][k]["role"] in roles]
    if not rows:
        return None
    return _table(caption, ["Endpoint", "Analysis", "n", "Estimate", f"{level} % CI", "p", "adjusted p"], rows, note)


def _labelled(labels: Mapping[str, str], arm: str) -> str:
    return labels.get(arm, f"arm {arm}")


def _time_tables(results, labels) -> list[dict]:
    desc = results["descriptives"]["reading_time"]
    rows = []
    for arm in ARMS:
        d = desc.get(arm, {})
        rows.append([_labelled(labels, arm), str(d.get("n", 0)), num(d.get("mean")), num(d.get("sd")),
                     num(d.get("median")), ci(d.get("q1"), d.get("q3")), num(d.get("geometric_mean"))])
    tables = [_table("Active reading time per read (seconds)",
                     ["Arm", "Reads", "Mean", "SD", "Median", "IQR", "Geometric mean"], rows)]
    a = results["analyses"].get("reading_time.lmm")
    if a and a["status"] == "ok":
        r, s = a["result"], a["summary"]
        vc = ", ".join(f"{k}: {num(v)}" for k, v in r["variance_components"].items())
        tables.append(_table("Linear mixed model on log active seconds", ["Quantity", "Value"], [
            ["Ratio of geometric means X / Y", f"{num(s['estimate'])} {ci(s['low'], s['high'])}"],
            ["Time reduction, 100 (1 − ratio)", f"{num(s['percent_reduction'])} % "
                                               f"{ci(*s['percent_reduction_ci'])}"],
            ["t, Satterthwaite df, p", f"{num(r['statistic'])}, {num(r['df'])}, {pval(r['pvalue'])}"],
            ["Random intercepts", ", ".join(a.get("random_terms", []))],
            ["Variance components (log scale)", vc + f", residual: {num(r['residual_variance'])}"],
        ], "; ".join(a.get("notes", []))))
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
    tables = [_table(f"{title}: distribution of expert scores", ["Arm", "Scores", "Mean", "SD", "1", "2", "3", "4", "5"],
                     rows)]
    a = results["analyses"].get(f"{name}.paired")
    if a and a["status"] == "ok":
        r = a["result"]
        tables.append(_table(f"{title}: paired case-level comparison", ["Quantity", "Value"], [
            ["Cases scored in both arms", str(r["n_cases"])],
            ["Mean of case means, X / Y", f"{num(r['mean_x'])} / {num(r['mean_y'])}"],
            ["Mean difference X − Y", f"{num(r['t']['mean_difference'])} {ci(r['t']['low'], r['t']['high'])}"],
            ["Paired t (df), p", f"{num(r['t']['statistic'])} ({r['t']['df']}), {pval(r['t']['pvalue'])}"],
            ["Wilcoxon signed-rank V, p", f"{num(r['wilcoxon']['statistic'])}, {pval(r['wilcoxon']['pvalue'])} "
                                          f"({r['wilcoxon']['method']}; {r['wilcoxon']['n_zero']} zero differences)"],
        ]))
    return tables


def _preference_tables(results, labels) -> list[dict]:
    a = results["analyses"].get("preference.binomial")
    if not a or a["status"] != "ok":
        return []
    r = a["result"]
    rows = [
        ["Cases", str(r["n_cases"])],
        [f"Majority preferred {_labelled(labels, 'X')}", f"{r['wins']} ({pct(r['share'])} of all cases) "
                                                         f"{_pct_ci(r['low'], r['high'])}"],
        [f"Majority preferred {_labelled(labels, 'Y')}", f"{r['losses']} ({pct(r['losses'] / r['n_cases'])})"],
        ["No majority / no preference (ties)", f"{r['ties']} ({pct(r['ties'] / r['n_cases'])})"],
        ["Exact binomial, X vs Y, ties excluded", f"{pct(r['share_decisive'])} "
                                                  f"{_pct_ci(r['decisive_low'], r['decisive_high'])}, p = {pval(r['pvalue'])}"],
        ["Ties split ½–½ (sensitivity)", f"{pct(r['share_ties_split'])} "
                                         f"{_pct_ci(r['ties_split_low'], r['ties_split_high'])}, p = {pval(r['ties_split_pvalue'])}"],
        ["Votes for X, case-clustered CI", f"{pct(r['votes_all']['share'])} "
                                           f"{_pct_ci(r['votes_all']['low'], r['votes_all']['high'])} of {r['votes_all']['votes']} votes"],
        ["Experts per case", f"{r['experts_per_case_min']}–{r['experts_per_case_max']}"],
    ]
    if r.get("position"):
        p = r["position"]
        rows.append(["Position bias: left report chosen", f"{p['left_chosen']} of {p['votes']} "
                                                          f"({pct(p['share_left'])}), p = {pval(p['pvalue'])}"])
    return [_table("Preference between the two reports of a case", ["Quantity", "Value"], rows,
                   "Denominator of the share: all cases, ties included.")]


def _detection_tables(results, labels) -> list[dict]:
    tables = []
    a = results["analyses"].get("detection.mcnemar")
    if a and a["status"] == "ok":
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
        tables.append(_table("Detection by arm (reader calls vs the reference standard)",
                             ["Finding", f"Sensitivity {_labelled(labels, 'X')}", f"Sensitivity {_labelled(labels, 'Y')}",
                              "McNemar p", f"Specificity {_labelled(labels, 'X')}", f"Specificity {_labelled(labels, 'Y')}",
                              "McNemar p"], rows,
                             "Wilson intervals; McNemar with continuity correction on the paired reads of a case."))
    m = results["analyses"].get("detection.mrmc")
    if m and m["status"] == "ok":
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


def _auc_table(results) -> list[dict]:
    a = results["analyses"].get("ai_auc.delong")
    if not a or a["status"] != "ok":
        return []
    rows = []
    for finding, r in a["result"]["findings"].items():
        if r["status"] == "ok":
            res = r["result"]
            rows.append([finding, num(res["auc"]), ci(res["low"], res["high"]), str(res["n_positive"]),
                         str(res["n_negative"])])
        else:
            rows.append([finding, "not estimable", r["reason"], "–", "–"])
    return [_table("AI finding scores against the reference standard", ["Finding", "AUC", "DeLong CI", "Present",
                                                                        "Absent"], rows)]


def _agreement_table(results) -> list[dict]:
    rows = []
    for name, title in (("quality", "Quality score"), ("radpeer", "RADPEER score"), ("preference", "Preference")):
        a = results["agreement"].get(name, {})
        if a.get("status") != "ok":
            rows.append([title, "not estimable: " + a.get("reason", ""), "–", "–", "–"])
            continue
        r = a["result"]
        if name == "preference":
            rows.append([title, f"{num(r['kappa'])} (p {pval(r['pvalue'])})", "–", "–",
                         f"{r['n_items']} cases × {r['n_raters']} experts"])
            continue
        rows.append([title, f"{num(r['fleiss']['kappa'])} (p {pval(r['fleiss']['pvalue'])})",
                     f"{num(r['icc2']['estimate'])} {ci(r['icc2']['low'], r['icc2']['high'])}",
                     f"{num(r['icc3']['estimate'])} {ci(r['icc3']['low'], r['icc3']['high'])}",
                     f"{r['n_items']} reports × {r['n_raters']} experts" + ("" if a.get("same_raters") else " (positions)")])
    return [_table("Agreement between experts", ["Scores", "Fleiss κ", "ICC(2,1)", "ICC(3,1)", "Design"], rows)]


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
            ["At least 90 % of the draft kept", f"{a['kept_at_least_90']} ({pct(a['kept_at_least_90'] / a['reports'])})"]]
    if a.get("kept_share_vs_quality"):
        q = a["kept_share_vs_quality"]
        rows.append(["Kept share vs quality score (Spearman ρ)", f"{num(q['spearman_rho'])}, p = {pval(q['pvalue'])}, "
                                                                 f"n = {q['n']}"])
    rows += [[f"Reader {r}", f"{v['reports']} reports, mean kept {pct(v['mean_kept_share'])}"]
             for r, v in a["per_reader"].items()]
    return [_table("Automation bias (how much of the AI draft was kept)", ["Quantity", "Value"], rows)]


def _multiplicity_tables(results) -> list[dict]:
    tables = []
    for family, title in (("secondary", "Key secondary family"), ("exploratory", "Exploratory family")):
        m = results["multiplicity"].get(family)
        if not m:
            continue
        rows = [[n, pval(p), pval(a), "yes" if r else "no"] for n, p, a, r in
                zip(m["names"], m["pvalues"], m["adjusted"], m["rejected"])]
        tables.append(_table(f"{title}: {m['method']} adjustment at α = {m['alpha']}",
                             ["Test", "p", "adjusted p", "rejected"], rows))
    return tables


def build_report(results: Mapping[str, Any], *, labels: Mapping[str, str], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Plain data for a template: meta rows, the flow and the sections (each a title, tables, notes)."""
    level = int(round(100 * results["confidence_level"]))
    alpha = results["alpha"]
    primary = next((results["analyses"][k] for k in results["order"] if results["analyses"][k]["role"] == "primary"),
                   None)
    verdict = ""
    if primary and primary["status"] == "ok" and primary["pvalues"]:
        p = primary["pvalues"][0]["pvalue"]
        verdict = (f"Primary endpoint: p = {pval(p)}, " + ("significant" if p is not None and p <= alpha
                                                            else "not significant") + f" at α = {alpha}.")
    sections = [
        {"id": "primary", "title": "Primary endpoint", "tables": [t for t in [
            _effects_table(results, ("primary",), "Primary analysis")] if t], "notes": [verdict] if verdict else []},
        {"id": "secondary", "title": "Key secondary endpoints", "tables": [t for t in [
            _effects_table(results, ("secondary",), "Key secondary analyses (Holm-adjusted p)")] if t], "notes": []},
        {"id": "sensitivity", "title": "Sensitivity analyses", "tables": [t for t in [
            _effects_table(results, ("sensitivity",), "Sensitivity analyses (not adjusted)")] if t], "notes": []},
        {"id": "exploratory", "title": "Exploratory analyses and subgroups", "tables": [t for t in [
            _effects_table(results, ("exploratory", "subgroup"), "Exploratory analyses (Benjamini–Hochberg-adjusted p)")]
            if t], "notes": [f"Subgroup {s['name']}: {s['cases']} cases" + ("" if s["status"] == "ok" else
                                                                            f" (not estimable: {s['reason']})")
                             for s in results.get("subgroups", [])]},
        {"id": "time", "title": "Reading time", "tables": _time_tables(results, labels), "notes": [],
         "plot": "reading_time"},
        {"id": "quality", "title": "Report quality", "tables": _score_tables(results, labels, "quality", "Quality"),
         "notes": [], "plot": "quality"},
        {"id": "radpeer", "title": "RADPEER-based score", "tables": _score_tables(results, labels, "radpeer", "RADPEER"),
         "notes": ["RADPEER " + ", ".join(f"{code} → {score}" for code, score in radpeer_scale.SCORE.items())
                   + " (higher is better)."]},
        {"id": "preference", "title": "Expert preference", "tables": _preference_tables(results, labels), "notes": [],
         "plot": "preference"},
        {"id": "detection", "title": "Detection by arm", "tables": _detection_tables(results, labels), "notes": []},
        {"id": "ai", "title": "AI finding scores", "tables": _auc_table(results), "notes": []},
        {"id": "agreement", "title": "Agreement between experts", "tables": _agreement_table(results), "notes": []},
        {"id": "automation", "title": "Automation bias", "tables": _automation_table(results, labels), "notes": []},
        {"id": "multiplicity", "title": "Multiplicity", "tables": _multiplicity_tables(results), "notes": []},
        {"id": "forest", "title": "Forest plot", "tables": [], "notes": [
            f"Point estimates with {level} % confidence intervals, arm X relative to arm Y."], "plot": "forest"},
    ]
    flow = results["flow"]
    flow_arms = [{"arm": arm, "label": _labelled(labels, arm), **flow["arms"].get(arm, {})} for arm in ARMS]
    return {"meta": list(meta.items()), "sections": sections, "flow": flow, "flow_arms": flow_arms,
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
    "share": ("Share of cases preferring X", 0.5, False),
}


def forest_rows(results) -> dict[str, list[tuple[str, float, float, float]]]:
    """Estimates with intervals by scale, in plan order: what the forest plot draws."""
    out: dict[str, list] = {k: [] for k in SCALES}
    for key in results["order"]:
        a = results["analyses"][key]
        s = a.get("summary")
        if a["status"] != "ok" or not s or s.get("low") is None or s.get("high") is None:
            continue
        name = f"{a['endpoint'].replace('_', ' ')} ({a['test']})" + (f", {a['subgroup']}" if a.get("subgroup") else "")
        out[s["scale"]].append((name, s["estimate"], s["low"], s["high"]))
    return {k: v for k, v in out.items() if v}


def plot_forest(results, labels) -> bytes:
    rows = forest_rows(results)
    panels = list(rows.items()) or [("difference", [])]
    height = 0.9 + sum(0.32 * len(v) + 0.7 for _, v in panels)
    fig = _figure(6.5, height)
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": [max(1, len(v)) + 1.5
                                                                                       for _, v in panels]})
    for ax, (scale, items) in zip(axes[:, 0], panels):
        title, null, log = SCALES[scale]
        ys = list(range(len(items)))[::-1]
        for y, (name, est, low, high) in zip(ys, items):
            ax.plot([low, high], [y, y], color="#333333", lw=1.4)
            ax.plot([est], [y], "s", color="#3b6ea5", ms=6)
        ax.axvline(null, color="#999999", ls="--", lw=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([i[0] for i in items], fontsize=8)
        if log:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_xlabel(title, fontsize=8)
        ax.set_ylim(-0.8, len(items) - 0.2)
    fig.suptitle(f"{_labelled(labels, 'X')} relative to {_labelled(labels, 'Y')}", fontsize=9)
    return _png(fig)


def plot_preference(results, labels) -> bytes:
    fig = _figure(6.0, 2.0)
    ax = fig.subplots()
    a = results["analyses"].get("preference.binomial")
    if a and a["status"] == "ok":
        r = a["result"]
        n = r["n_cases"]
        parts = [(r["wins"], COLOURS["X"], f"{_labelled(labels, 'X')} preferred"),
                 (r["ties"], "#bbbbbb", "tie / no preference"),
                 (r["losses"], COLOURS["Y"], f"{_labelled(labels, 'Y')} preferred")]
        left = 0.0
        for count, colour, label in parts:
            share = count / n
            ax.barh([0], [share], left=[left], color=colour, label=f"{label}: {count} ({100 * share:.1f} %)")
            left += share
        ax.errorbar([r["share"]], [0.45], xerr=[[r["share"] - r["low"]], [r["high"] - r["share"]]], fmt="o",
                    color="black", capsize=3, ms=3)
        ax.axvline(0.5, color="#666666", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, 0.8)
    ax.set_yticks([])
    ax.set_xlabel("Share of cases (all cases; marker: share preferring X with its Wilson CI)", fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, frameon=False)
    return _png(fig)


def plots(results: Mapping[str, Any], *, labels: Mapping[str, str]) -> dict[str, bytes]:
    return {"reading_time": plot_reading_time(results, labels), "quality": plot_quality(results, labels),
            "forest": plot_forest(results, labels), "preference": plot_preference(results, labels)}


def plot(name: str, results: Mapping[str, Any], *, labels: Mapping[str, str]) -> bytes:
    return {"reading_time": plot_reading_time, "quality": plot_quality, "forest": plot_forest,
            "preference": plot_preference}[name](results, labels)
