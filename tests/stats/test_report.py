"""The report: sections of the paper's endpoints, the flow, plots, and a self-contained downloadable file."""
from __future__ import annotations

import re

import pytest

from stats import analysis, dataset, report, simulate
from stats import plan as plan_schema
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    assert_masked,
    build_trial,
    complete_trial,
    freeze_default_plan,
    run_now,
)


@pytest.fixture(scope="module")
def results():
    # 12 readers in 3 sites: two per arm in every site, so that every level of the site subgroup is estimable
    trial, rows = simulate.simulate_rows(n_readers=12, n_cases=40, n_experts=5, seed=11)
    view = dataset.coded(dataset.build_snapshot(trial=trial, rows=rows), {"X": "assisted", "Y": "standard"})
    return analysis.run_analysis(view, plan=plan_schema.validate(plan_schema.default_plan()),
                                 design="paired_parallel", findings=trial["findings"])


LABELS = {"X": "arm X", "Y": "arm Y"}


def test_every_planned_analysis_is_estimable_on_a_complete_trial(results):
    failed = {k: a.get("reason") for k, a in results["analyses"].items() if a["status"] != "ok"}
    assert not failed
    assert results["analyses"]["reading_time.lmm"]["summary"]["scale"] == "ratio"
    assert results["subgroups"][0]["cases"] > 0


def test_the_report_has_the_papers_endpoints_and_the_flow(results):
    doc = report.build_report(results, labels=LABELS, meta={"Trial": "sim"})
    titles = [s["title"] for s in doc["sections"]]
    for title in ("Primary endpoint", "Reading time", "Report quality", "Expert preference", "Detection by arm",
                  "AI finding scores", "Agreement between experts", "Automation bias", "Multiplicity"):
        assert title in titles
    primary = doc["sections"][0]["tables"][0]["rows"][0]
    assert primary[0].startswith("Report quality") and primary[4].startswith("[")
    assert doc["flow"]["enrolled"] == 40 and [a["label"] for a in doc["flow_arms"]] == ["arm X", "arm Y"]
    assert "significant" in doc["sections"][0]["notes"][0]


def test_withheld_sections_say_why(results):
    masked = analysis.without_withheld(results)
    doc = report.build_report(masked, labels=LABELS, meta={})
    automation = next(s for s in doc["sections"] if s["id"] == "automation")
    assert automation["tables"][0]["rows"][0][0] == "Withheld"
    assert_masked(repr(doc))


@pytest.mark.parametrize("name", report.PLOTS)
def test_each_plot_is_a_png(results, name):
    png = report.plot(name, results, labels=LABELS)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_the_forest_plot_groups_effects_by_scale(results):
    rows = report.forest_rows(results)
    assert set(rows) == {"difference", "ratio", "odds_ratio", "share"}
    assert any("complex_reference" in name for name, *_ in rows["ratio"])


def test_numbers_are_formatted_for_people():
    assert report.pval(0.0004) == "< 0.001" and report.pval(0.0412) == "0.041" and report.pval(None) == "–"
    assert report.num(0.034567) == "0.0346" and report.num(123.456) == "123"
    assert report.ci(0.1, 0.25) == "[0.100, 0.250]" and report.num(9.13e153) == "9.13e+153"


@pytest.mark.django_db
def test_the_downloaded_report_is_one_self_contained_file(complete_trial, client, django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    client.force_login(sim.statistician)
    response = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/report.html")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{sim.trial.code}-analysis-run001-masked.html"'
    html = response.content.decode()
    assert html.count('src="data:image/png;base64,') == 4
    # nothing is fetched from anywhere: no external script, style sheet or image
    assert not re.search(r'<(script|link)\b', html) and not re.search(r'src="(?!data:)', html)
    assert run.dataset_sha256 in html and run.plan_sha256 in html
    assert_masked(html)


def test_the_results_of_a_run_made_before_schema_2_still_render():
    import json
    from pathlib import Path

    old = json.loads((Path(__file__).parent / "data" / "results_schema1.json").read_text(encoding="utf-8"))
    assert old["schema"] == 1
    doc = report.build_report(old, labels=LABELS, meta={})
    primary = doc["sections"][0]["tables"][0]["rows"][0]
    assert primary[1].startswith("paired") and "fixed readers — not a test of the AI effect" in primary[1]
    for name in report.PLOTS:
        assert report.plot(name, old, labels=LABELS)[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_share_in_the_preference_section_states_its_denominator(results):
    doc = report.build_report(results, labels=LABELS, meta={})
    tables = next(s for s in doc["sections"] if s["id"] == "preference")["tables"]
    headline, majority = tables
    rows = dict(headline["rows"])
    assert rows["Denominator"].endswith("votes preferred neither report and are not in the model)")
    text = " ".join(v for _, v in majority["rows"])
    assert "of 40 cases" in text and "decisive cases" in text and "fixed readers" in majority["caption"]
    # the share of all cases has its interval but no test against ½; the decisive share has both
    share_all = next(v for k, v in majority["rows"] if k.startswith("Majority preferred arm X"))
    assert "no test" in share_all and "p =" not in share_all


def test_the_primary_and_the_gate_are_in_the_multiplicity_section(results):
    doc = report.build_report(results, labels=LABELS, meta={})
    tables = next(s for s in doc["sections"] if s["id"] == "multiplicity")["tables"]
    assert tables[0]["caption"].startswith("Primary test at α")
    secondary = next(t for t in tables if t["caption"].startswith("Key secondary family"))
    assert secondary["note"].startswith("Tested only if the primary (quality.lmm) rejected")
    assert any(t["caption"].startswith("Subgroup interaction family") for t in tables)
