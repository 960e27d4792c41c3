"""A plan amended after database lock or after a masked run is flagged in the report, with every plan version and its
freeze time (issue 14, item 10); the report shows the estimands and the tipping point, and names no arm."""
from __future__ import annotations

import json

import pytest

from stats import plan as plan_schema
from stats import provenance, report, selectors, services
from tests.signing import move, proof
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    assert_masked,
    build_trial,
    complete_trial,
    run_now,
    zip_members,
)
from trial.models import Status


def test_versions_frozen_after_the_lock_or_after_a_masked_run_are_flagged():
    versions = [{"version": 1, "frozen_at": "t1", "sha256": "a" * 64, "freeze_seq": 10},
                {"version": 2, "frozen_at": "t3", "sha256": "b" * 64, "freeze_seq": 30},
                {"version": 3, "frozen_at": None, "sha256": "", "freeze_seq": None}]
    runs = [{"number": 1, "plan_version": 1, "finished_at": "t2", "finished_seq": 25, "masked": True}]
    history = provenance.plan_history(versions=versions, lock={"seq": 20, "at": "L"}, runs=runs, used_version=2)
    v1, v2, v3 = history["versions"]
    assert v1["flags"] == [] and not v1["amendment"]
    assert v2["flags"] == ["amended after the database lock (L)", "amended after masked results had been seen (run 1)"]
    assert v3["flags"] == [] and history["used_version_flagged"] and v2["used_by_this_run"]
    # a run made after unblinding is not a masked run
    runs[0]["masked"] = False
    assert provenance.plan_history(versions=versions, lock=None, runs=runs)["versions"][1]["flags"] == []


def _lock(sim, django_capture_on_commit_callbacks):
    for status in (Status.SCORING, Status.LOCKED):
        with django_capture_on_commit_callbacks(execute=True):
            move(sim.trial, by=sim.investigator, to=status)


@pytest.mark.django_db
def test_a_run_of_a_plan_amended_after_the_lock_and_a_masked_run_says_so(complete_trial, client,
                                                                          django_capture_on_commit_callbacks):
    sim = complete_trial(code="ph", lock=False)
    v1 = services.freeze_plan(plan=services.create_plan_version(trial=sim.trial, by=sim.statistician,
                                                                content=plan_schema.default_plan()),
                              by=sim.statistician, proof=proof(sim.statistician))
    _lock(sim, django_capture_on_commit_callbacks)
    first = run_now(sim, django_capture_on_commit_callbacks)
    amended = {**plan_schema.default_plan(), "alpha": 0.04, "notes": "amended after seeing run 1"}
    v2 = services.freeze_plan(plan=services.create_plan_version(trial=sim.trial, by=sim.statistician,
                                                                content=amended), by=sim.statistician,
                              proof=proof(sim.statistician))
    second = run_now(sim, django_capture_on_commit_callbacks)

    history = selectors.plan_history(run=first)
    assert [v["flags"] for v in history["versions"]] == [[], [
        f"amended after the database lock ({history['locked_at']})",
        "amended after masked results had been seen (run 1)"]]
    assert not history["used_version_flagged"]           # run 1 executed v1, frozen before the lock
    assert history["versions"][0]["frozen_at"] == v1.frozen_at.isoformat(timespec="microseconds")

    client.force_login(sim.statistician)
    html = client.get(f"/t/{sim.trial.code}/analysis/runs/{second.number}/").content.decode()
    assert "amended after the database lock" in html and "amended after masked results had been seen (run 1)" in html
    assert v1.sha256[:16] in html and v2.sha256[:16] in html and "v2 (this run)" in html
    assert html.index("Analysis plan versions") < html.index("Primary endpoint")      # flagged: shown first
    assert "Estimands and intercurrent events" in html and "Missing outcomes: tipping point" in html
    assert_masked(html.replace(sim.trial.title, ""), "the run page")
    # the first run's report lists the versions too, at the end, without a warning
    html = client.get(f"/t/{sim.trial.code}/analysis/runs/{first.number}/").content.decode()
    assert "Every version of the analysis plan" in html
    assert html.index("Analysis plan versions") > html.index("Primary endpoint")
    # and the export carries the same history
    _, data = services.export_run(run=second, by=sim.statistician)
    exported = json.loads(zip_members(data)["plan_history.json"])
    assert exported == json.loads(plan_schema.canonical_json(selectors.plan_history(run=second)))


def test_the_report_reads_results_without_estimands():
    from pathlib import Path

    old = json.loads((Path(__file__).parent / "data" / "results_schema2.json").read_text())
    old.pop("estimands", None)
    old.pop("tipping_point", None)
    doc = report.build_report(old, labels={"X": "arm X", "Y": "arm Y"}, meta={})
    sections = {s["id"]: s for s in doc["sections"]}
    assert "predates estimands" in sections["estimands"]["notes"][0]
    assert sections["missing"]["notes"] == ["No tipping-point analysis was planned."]
