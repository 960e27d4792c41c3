"""A plan anyone can re-run (issue 14, item 10): `python -m stats.analysis PLAN.json DATA` on a real export gives the
stored results byte for byte, the export's R script refits the primary to 1e-6, and the export carries the
analysis-ready table, the trial facts and the plan history."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stats import analysis, dataset, exports, selectors, services, simulate
from stats import plan as plan_schema
from stats.models import RunStatus
from tests.signing import move
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    assert_masked,
    build_trial,
    complete_trial,
    freeze_default_plan,
    run_now,
    zip_members,
)

from .rscript import require_r_packages, run_r

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}   # it must need no Django
    return subprocess.run([sys.executable, "-m", "stats.analysis", *args], capture_output=True, cwd=ROOT, env=env,
                          timeout=300)


def _unzip(data: bytes, where: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(where)
    (folder,) = [p for p in where.iterdir() if p.is_dir()]
    return folder


@pytest.fixture
def exported(complete_trial, django_capture_on_commit_callbacks, tmp_path):
    """A finished run of a 2-site trial (6 readers per site; reader, case and expert effects) and its masked
    export, unzipped."""
    sim = complete_trial(n_cases=24, readers_per_site=6, sites=("site-a", "site-b"), reader_sd=0.3, case_sd=0.6,
                         expert_sd=0.3, code="rr")
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    assert run.status == RunStatus.DONE, run.error
    name, data = services.export_run(run=run, by=sim.statistician)
    (tmp_path / name).write_bytes(data)
    return {"sim": sim, "run": run, "zip": tmp_path / name, "data": data,
            "folder": _unzip(data, tmp_path / "unzipped")}


@pytest.mark.django_db
def test_python_m_stats_analysis_reproduces_the_stored_run_byte_for_byte(exported, django_capture_on_commit_callbacks,
                                                                          tmp_path):
    run, folder = exported["run"], exported["folder"]
    stored = plan_schema.canonical_json(selectors.visible_results(run))
    # the zip as downloaded; --check compares with the export's results.json
    proc = _cli(str(folder / "plan.json"), str(exported["zip"]), "--check")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.rstrip(b"\n") == stored
    assert b"identical" in proc.stderr
    # after unblinding, from the unzipped folder: the real arms, recoded to the run's X/Y by arms.csv, and the
    # withheld section back
    sim = exported["sim"]
    with django_capture_on_commit_callbacks(execute=True):
        move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    run.refresh_from_db()
    _, data = services.export_run(run=run, by=sim.statistician)
    unblinded = _unzip(data, tmp_path / "unblinded")
    assert (unblinded / "arms.csv").exists()
    proc = _cli(str(unblinded / "plan.json"), str(unblinded), "--check")
    assert proc.returncode == 0, proc.stderr.decode()
    full = json.loads(proc.stdout)
    assert full == run.results and full["automation_bias"]["status"] == "ok"


def test_a_bad_plan_or_folder_is_refused_in_one_line(tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    proc = _cli(str(tmp_path / "plan.json"), str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.decode().startswith("error: ")
    assert proc.stdout == b""


def test_the_re_run_module_imports_no_django():
    code = "import sys, stats.rerun, stats.analysis; print(any(m.split('.')[0] in ('django', 'rest_framework') " \
           "for m in sys.modules))"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, env=env, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.django_db
def test_the_export_carries_the_analysis_table_its_dictionary_the_facts_and_the_r_script(exported):
    files = zip_members(exported["data"])
    run = exported["run"]
    for name in ("trial.json", "run.json", "plan_history.json", "analysis/analysis_table.csv",
                 "analysis/analysis_table_dictionary.csv", "analysis/reference_analysis.R"):
        assert name in files, name
        assert_masked(files[name].decode("utf-8"), name)
    assert json.loads(files["trial.json"])["design"] == "paired_parallel"
    info = json.loads(files["run.json"])
    assert info["plan_sha256"] == run.plan_sha256 and info["dataset_sha256"] == run.dataset_sha256
    table = list(csv.DictReader(io.StringIO(files["analysis/analysis_table.csv"].decode())))
    assert len(table) == 48                                   # 24 cases × 2 arms, one report each
    assert {r["arm"] for r in table} == {"X", "Y"}
    assert all(r["ie_read_not_submitted"] == "0" and r["in_quality"] == "1" for r in table)
    scores = list(csv.DictReader(io.StringIO(files["csv/quality_scores.csv"].decode())))
    row = table[0]
    mine = [float(s["score"]) for s in scores if s["read"] == row["read"]]
    assert float(row["quality_mean"]) == pytest.approx(sum(mine) / len(mine), abs=1e-12)
    described = {d["column"] for d in csv.DictReader(io.StringIO(files["analysis/analysis_table_dictionary.csv"]
                                                                 .decode()))}
    assert described == set(table[0])
    history = json.loads(files["plan_history.json"])
    # the fixture freezes its plan after locking the trial, and the history says so
    assert [v["version"] for v in history["versions"]] == [1] and history["versions"][0]["used_by_this_run"]
    assert history["versions"][0]["flags"] == [f"first frozen after the database lock ({history['locked_at']})"]


def _export_without_a_server(where: Path) -> Path:
    """The export of a simulated trial's run, built as services.export_run builds it, unzipped (no database)."""
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=12, n_experts=3, seed=5)
    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    mapping = {"X": "standard", "Y": "assisted"}
    content = plan_schema.validate(plan_schema.default_plan())
    results = analysis.without_withheld(analysis.run_analysis(dataset.coded(snapshot, mapping), plan=content,
                                                              design=facts["design"], findings=facts["findings"]))
    view = dataset.masked(snapshot, mapping)
    files = {"plan.json": plan_schema.canonical_json(plan_schema.frozen_document(trial_code="sim", version=1,
                                                                                  content=content)),
             "results.json": plan_schema.canonical_json(results), "trial.json": plan_schema.canonical_json(facts),
             **services.analysis_files(view, results=results, design=facts["design"], trial="sim", run=1,
                                       plan_version=1, plan_sha256="0" * 64)}
    return _unzip(exports.build_zip(view, root="sim-run001", masked=True, files=files, formats=("csv",)), where)


def test_the_check_names_every_value_that_differs_and_fails(tmp_path):
    folder = _export_without_a_server(tmp_path)
    assert _cli(str(folder / "plan.json"), str(folder), "--check").returncode == 0
    results = json.loads((folder / "results.json").read_text())
    results["analyses"]["quality.lmm"]["result"]["estimate"] += 1e-9
    (folder / "results.json").write_bytes(plan_schema.canonical_json(results))
    proc = _cli(str(folder / "plan.json"), str(folder), "--check")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "different: 1 values differ" in err and "/analyses/quality.lmm/result/estimate" in err
    assert "results.json: its SHA-256 differs from MANIFEST.sha256" in err


# How far lmerTest's own Satterthwaite df moves when the same model is fitted to the same rows in another order (four
# orders): the df rest on a numerical Hessian of the REML deviance, whose rounding lmerTest's steps (numDeriv's) carry
# into the df where a variance component is small but not zero. Measured on one such export (a reader variance of
# 0.001): lmerTest's df 5.39538 moved by up to 4.6e-6 relative over eight row orders, while ours moved by 2e-7 over
# four step sizes. Our df must agree with lmerTest's to 1e-6 (secondaries 1e-5) or to three times lmerTest's own
# spread, whichever is wider: never tighter than the reference can be.
R_DF_SPREAD = r"""
lmm_out_reference <- lmm_out
lmm_out <- function(name, m) {
  lmm_out_reference(name, m)
  df <- coef(summary(m))["armX", "df"]
  rows <- d
  dfs <- vapply(1:4, function(i) {
    set.seed(i)
    refit <- suppressMessages(update(m, data = rows[sample(nrow(rows)), ]))
    coef(summary(refit))["armX", "df"]
  }, 0)
  out(name, "df_spread", max(abs(dfs - df)) / df)
}
"""


def _df_tolerance(r: dict, analysis: str, floor: float) -> float:
    return max(floor, 3.0 * r[(analysis, "df_spread")])


def _df_context(r: dict, analyses: dict, analysis: str) -> str:
    """What a df failure needs for a diagnosis (the fixture's data are new each run): lmerTest's spread and the
    fitted variance components, where a small one is the usual suspect."""
    result = analyses[analysis]["result"]
    return (f"{analysis} df: ours {result['df']!r}, lmerTest {r[(analysis, 'df')]!r}, lmerTest's own spread over row "
            f"orders {r[(analysis, 'df_spread')]:.2e}; variance components {result.get('variance_components')}, "
            f"residual {result.get('residual_variance')}")


# A standard error of the preference log-odds above this (odds multiplied or divided by e**10 per SE) marks a
# separated fit: the votes of the decisive cases all, or nearly all, one way.
SEPARATED_SE = 10.0


def _r_numbers(stdout: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            out[(parts[0], parts[1])] = float(parts[2])
    if not out:
        pytest.fail(f"no numbers read back from R:\n{stdout}")
    return out


@pytest.mark.r_oracle
@pytest.mark.django_db
def test_the_exported_r_script_reproduces_the_primary_and_the_key_secondaries(exported):
    require_r_packages("lme4", "lmerTest", "ordinal")
    folder, run = exported["folder"], exported["run"]
    script = (folder / "analysis" / "reference_analysis.R").read_text(encoding="utf-8")
    assert "\n# quality.lmm" in script
    script = script.replace("\n# quality.lmm", R_DF_SPREAD + "\n# quality.lmm", 1)
    r = _r_numbers(run_r(f'export_dir <- "{folder.as_posix()}"\n' + script, timeout=300))
    a = selectors.visible_results(run)["analyses"]
    primary = a["quality.lmm"]["result"]
    for key in ("estimate", "se"):
        assert primary[key] == pytest.approx(r[("quality.lmm", key)], rel=1e-6), key
    assert primary["df"] == pytest.approx(r[("quality.lmm", "df")], rel=_df_tolerance(r, "quality.lmm", 1e-6)), \
        _df_context(r, a, "quality.lmm")
    assert primary["pvalue"] == pytest.approx(r[("quality.lmm", "pvalue")], rel=1e-5)
    for key in ("radpeer.lmm", "reading_time.lmm"):
        for q in ("estimate", "se"):
            assert a[key]["result"][q] == pytest.approx(r[(key, q)], rel=1e-5), (key, q)
        assert a[key]["result"]["df"] == pytest.approx(r[(key, "df")], rel=_df_tolerance(r, key, 1e-5)), \
            _df_context(r, a, key)
    assert a["reading_time.lmm"]["summary"]["difference_seconds"] == pytest.approx(
        r[("reading_time.lmm", "difference_seconds")], rel=1e-5)
    # the Laplace fits: glmer run to convergence (its PIRLS too) maximises the same likelihood as we do; clmm's
    # standard errors come from its own finite-difference Hessian
    pref = a["preference.glmm"]["result"]
    if r[("preference.glmm", "ml_se")] > SEPARATED_SE:
        # The fixture's 24 cases draw their votes at random (the trial's seed is new each run): now and then the
        # decisive votes fall (nearly) all one way, the likelihood is flat in the log-odds, and neither fit has a
        # standard error to agree on (R's and ours both run off to tens). Then both must say so, in the same
        # direction; otherwise they agree to the digits below.
        assert pref["ml_se"] > SEPARATED_SE
        assert pref["log_odds"] * r[("preference.glmm", "log_odds")] > 0
    else:
        assert pref["log_odds"] == pytest.approx(r[("preference.glmm", "log_odds")], abs=1e-4)
        assert pref["ml_se"] == pytest.approx(r[("preference.glmm", "ml_se")], rel=1e-3)
    ordinal = a["quality.ordinal_glmm"]["result"]
    assert ordinal["estimate"] == pytest.approx(r[("quality.ordinal_glmm", "estimate")], abs=1e-3)
    assert ordinal["ml_se"] == pytest.approx(r[("quality.ordinal_glmm", "ml_se")], rel=1e-3)
