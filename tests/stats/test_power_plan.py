"""Power and sample size frozen with the plan (issue 14, item 4): the plan's power section, its result computed at
freezing, the page for investigators and statisticians, the CLI; and plan schema 3 reading older plans as meant."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stats import plan as plan_schema
from stats import services
from stats.methods.power import VarianceComponents, plan_power, preference_power, quality_power, time_power
from tests.signing import proof
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    build_trial,
    complete_trial,
    freeze_default_plan,
    run_now,
)
from trial import services as trial_services
from trial.models import Role

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def _with_power(**change):
    plan = plan_schema.default_plan()
    plan["power"] = {**plan_schema.POWER_DEFAULTS, **change}
    return plan


def test_the_plans_power_result_is_stats_methods_power():
    content = plan_schema.validate(_with_power(readers_per_arm=8, n_cases=200))
    assert content["power"]["result"] is None                      # computed when frozen, not before
    frozen = plan_schema.with_power_result(content, design="paired_parallel")
    result = frozen["power"]["result"]
    q = plan_schema.POWER_DEFAULTS["quality"]
    expected = quality_power(n_cases=200, readers_per_arm=8, n_experts=5, effect=q["effect"],
                             components=VarianceComponents.from_sds(reader=q["reader_sd"], report=q["report_sd"],
                                                                   residual=q["residual_sd"]))
    assert result["quality"]["power"] == expected.power and result["quality"]["df"] == expected.df
    assert result["quality"]["readers_for_80"] == expected.readers_for_80
    assert result["quality"]["readers_for_90"] == expected.readers_for_90 > result["quality"]["readers_for_80"]
    t = plan_schema.POWER_DEFAULTS["time"]
    assert result["time"]["power"] == time_power(
        n_cases=200, readers_per_arm=8, time_ratio=t["time_ratio"],
        components=VarianceComponents.from_sds(reader=t["reader_sd"], residual=t["residual_sd"])).power
    p = plan_schema.POWER_DEFAULTS["preference"]
    assert result["preference"]["power"] == preference_power(
        n_cases=200, readers_per_arm=8, n_experts=5, n_sites=3, effect=q["effect"], vote_sd=p["vote_sd"],
        tie_band=p["tie_band"], components=VarianceComponents.from_sds(reader=q["reader_sd"],
                                                                       report=q["report_sd"])).power
    assert content["power"]["source"] == "typed in"


def test_power_with_no_reader_variance_is_the_paired_t_power():
    from statsmodels.stats.power import TTestPower

    inputs = {**plan_schema.POWER_DEFAULTS, "quality": {"effect": 0.2, "reader_sd": 0.0, "report_sd": 0.3,
                                                        "residual_sd": 0.5}}
    res = plan_power(inputs, design="paired_parallel")["quality"]
    sd_diff = (2 * (0.3**2 + 0.5**2 / 5)) ** 0.5
    assert res["power"] == pytest.approx(TTestPower().power(effect_size=0.2 / sd_diff, nobs=296, alpha=0.05),
                                         rel=1e-10)


def test_an_endpoint_without_variance_says_why_and_leaves_the_others():
    inputs = {**plan_schema.POWER_DEFAULTS, "time": {"time_ratio": 0.8, "reader_sd": 0.0, "report_sd": 0.0,
                                                     "residual_sd": 0.0}}
    res = plan_power(inputs, design="paired_parallel")
    assert res["time"]["status"] == "not_computable" and "not both 0" in res["time"]["reason"]
    assert res["quality"]["status"] == "ok"
    other = plan_power(plan_schema.POWER_DEFAULTS, design="crossover")
    assert other["status"] == "not_available" and "paired-parallel" in other["reason"]


@pytest.mark.parametrize("change, message", [
    ({"readers_per_arm": 1}, "readers_per_arm must be a whole number from 2"),
    ({"quality": {"reader_sd": -0.1}}, "quality reader_sd must be a finite number ≥ 0"),
    ({"time": {"time_ratio": 0}}, "time time_ratio must be a finite number > 0"),
    ({"colour": "red"}, "power: unknown settings colour"),
])
def test_bad_power_inputs_are_refused_with_a_message(change, message):
    with pytest.raises(plan_schema.PlanError, match=message):
        plan_schema.validate(_with_power(**change))


def test_the_cli_prints_the_same_numbers_as_the_plan():
    out = subprocess.run([sys.executable, "-m", "stats.methods", "power", "--cases", "150", "--readers-per-arm", "6",
                          "--quality-effect", "0.3"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    inputs = {**plan_schema.POWER_DEFAULTS, "n_cases": 150, "readers_per_arm": 6,
              "quality": {**plan_schema.POWER_DEFAULTS["quality"], "effect": 0.3}}
    expected = json.loads(json.dumps(plan_power(inputs, design="paired_parallel")))
    for endpoint in ("quality", "time", "preference"):
        assert printed[endpoint] == expected[endpoint]
    bad = subprocess.run([sys.executable, "-m", "stats.methods", "power", "--readers-per-arm", "1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --readers-per-arm must be at least 2")


# -------------------------------------------------------------------------------------------- schema 3


def test_a_frozen_schema_2_plan_keeps_its_hash_and_is_read_as_it_was_meant():
    stored = json.loads((DATA / "plans_schema2.json").read_text())
    for design, content in stored["plans"].items():
        assert plan_schema.plan_sha256(trial_code="demo", version=1, content=content) == stored["sha256"][design]
        read = plan_schema.read_plan(content)
        assert read["schema"] == 3 and read["estimands"] is None
        assert read["tipping_point"] is False and read["power"] is None
        assert {k: v for k, v in read.items() if k not in ("schema", "estimands", "tipping_point", "power")} == \
            {k: v for k, v in content.items() if k != "schema"}
        assert plan_schema.validate(read) == read
        assert plan_schema.estimand_lines(content) == ["not stated (a schema-1 or schema-2 plan): every row "
                                                       "analysed as recorded"]


def test_the_default_plan_states_every_estimand_with_its_summary_measure():
    plan = plan_schema.validate(plan_schema.default_plan())
    assert set(plan["estimands"]) == set(plan_schema.ESTIMAND_ENDPOINTS) and plan["tipping_point"] is True
    for endpoint, spec in plan["estimands"].items():
        assert spec["population"] == "all_randomized"
        assert set(spec["intercurrent_events"].values()) == {"treatment_policy"}
        assert spec["summary_measure"] == plan_schema.SUMMARY_MEASURES[(endpoint, plan_schema.main_test(plan,
                                                                                                           endpoint))]
    with pytest.raises(plan_schema.PlanError, match="takes the strategy treatment_policy, not “hypothetical”"):
        plan_schema.validate({**plan_schema.default_plan(), "estimands": {
            "quality": {"intercurrent_events": {"read_not_submitted": "hypothetical"}}}})
    with pytest.raises(plan_schema.PlanError, match="the variable is one of active_seconds, wall_seconds"):
        plan_schema.validate({**plan_schema.default_plan(), "estimands": {"reading_time": {"variable": "minutes"}}})


# ------------------------------------------------------------------------------------ freezing and the page


@pytest.fixture
def statistician(trial, investigator, make_user):
    user = make_user("tina")
    trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.STATISTICIAN)
    return user


@pytest.mark.django_db
def test_freezing_stores_the_power_result_in_the_hashed_plan(trial, statistician, client):
    plan = services.create_plan_version(trial=trial, by=statistician, content=_with_power(readers_per_arm=6))
    assert plan.content["power"]["result"] is None
    frozen = services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    result = frozen.content["power"]["result"]
    assert result["status"] == "ok" and result["readers_per_arm"] == 6
    assert result == plan_power({k: v for k, v in frozen.content["power"].items() if k != "result"},
                                design=trial.design)
    assert frozen.sha256 == plan_schema.plan_sha256(trial_code=trial.code, version=1, content=frozen.content)
    client.force_login(statistician)
    home = client.get(f"/t/{trial.code}/analysis/").content.decode()
    assert f"power quality {result['quality']['power']:.3f}" in home and "all randomized" in home


@pytest.mark.django_db
def test_the_power_page_computes_from_the_form_and_from_a_runs_fits(complete_trial, client,
                                                                   django_capture_on_commit_callbacks):
    sim = complete_trial(code="pw")
    client.force_login(sim.statistician)
    page = client.get(f"/t/{sim.trial.code}/analysis/power/")
    assert page.status_code == 200 and "data-testid=\"power-form\"" in page.content.decode()
    query = {"n_cases": 296, "readers_per_arm": 10, "n_experts": 5, "n_sites": 3, "alpha": 0.05,
             "quality_effect": 0.25, "quality_reader_sd": 0.25, "quality_report_sd": 0.35, "quality_residual_sd": 0.6,
             "time_ratio": 0.82, "time_reader_sd": 0.2, "time_report_sd": 0, "time_residual_sd": 0.3,
             "vote_sd": 0.5, "tie_band": 0.25}
    html = client.get(f"/t/{sim.trial.code}/analysis/power/", query).content.decode()
    expected = plan_power({**plan_schema.POWER_DEFAULTS}, design="paired_parallel")
    assert f"data-testid=\"power-quality\">{expected['quality']['power']:.3f}" in html
    assert f">{expected['quality']['readers_for_80']}<" in html
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    html = client.get(f"/t/{sim.trial.code}/analysis/power/", {"from_run": run.number}).content.decode()
    vc = run.results["analyses"]["quality.lmm"]["result"]["variance_components"]
    assert f"value=\"{round(vc['reader'] ** 0.5, 4)}\"" in html
    assert f"run {run.number} (plan v1" in html
    outsider = client.get(f"/t/{sim.trial.code}/analysis/power/")
    client.force_login(sim.outsider)
    assert client.get(f"/t/{sim.trial.code}/analysis/power/").status_code in (403, 404)
    assert outsider.status_code == 200
