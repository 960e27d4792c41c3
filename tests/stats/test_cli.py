"""`python -m stats.methods ANALYSIS FILE.csv`: JSON on stdout, one-line errors and exit code 2 on bad input."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
VANDYKE = ROOT / "tests" / "stats" / "data" / "vandyke1993.csv"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stats.methods", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def ok(*args: str) -> dict:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def paired_csv(tmp_path):
    rng = np.random.default_rng(71)
    rows = []
    for c in range(25):
        base = rng.normal(60, 15)
        rows.append((f"c{c}", "assisted", round(base * 0.8 + rng.normal(0, 5), 2)))
        rows.append((f"c{c}", "standard", round(base + rng.normal(0, 5), 2)))
    rows.append(("c0", "assisted", 40.0))                 # a second row of a case in an arm is averaged
    return write_csv(tmp_path / "paired.csv", ["case", "arm", "y"], rows)


def test_paired_prints_the_difference_and_the_wilcoxon_test(paired_csv):
    out = ok("paired", paired_csv, "--log")
    assert out["analysis"] == "paired" and out["difference"] == "assisted - standard"
    assert out["n_cases"] == 25 and out["n_rows"] == 51
    assert out["t"]["log"] is True and out["t"]["ratio"] < 1
    assert out["t"]["low"] < out["t"]["mean_difference"] < out["t"]["high"]
    assert out["wilcoxon"]["method"] == "exact" and 0 <= out["wilcoxon"]["pvalue"] <= 1


def test_lmm_fits_the_arm_effect_with_crossed_random_effects(tmp_path):
    rng = np.random.default_rng(72)
    readers = {"assisted": ["r1", "r2", "r3"], "standard": ["r4", "r5", "r6"]}
    rows = []
    for c in range(30):
        case_effect = rng.normal(0, 0.3)
        for arm, shift in (("assisted", -0.2), ("standard", 0.0)):
            reader = readers[arm][c % 3]
            rows.append((f"c{c}", reader, arm, round(float(np.exp(4 + shift + case_effect + rng.normal(0, 0.2))), 3)))
    path = write_csv(tmp_path / "times.csv", ["case", "reader", "arm", "y"], rows)
    out = ok("lmm", path, "--random", "reader,case", "--log")
    assert out["analysis"] == "lmm" and out["log"] is True
    assert out["n_obs"] == 60 and out["df"] > 0
    assert 0 < out["ratio"] < 1.2


def test_clmm_fits_the_ordinal_arm_effect(tmp_path):
    rng = np.random.default_rng(73)
    rows = []
    for c in range(40):
        u = rng.normal(0, 1)
        for arm, shift in (("assisted", 0.6), ("standard", 0.0)):
            score = int(np.clip(np.rint(3 + u + shift + rng.normal(0, 0.8)), 1, 5))
            rows.append((f"c{c}", arm, score))
    path = write_csv(tmp_path / "scores.csv", ["case", "arm", "score"], rows)
    out = ok("clmm", path)
    assert out["analysis"] == "clmm"
    assert json.dumps(out)                               # plain JSON all the way down


def test_preference_reports_share_of_all_cases_and_position_bias(tmp_path):
    rng = np.random.default_rng(74)
    rows = [(f"c{c}", f"e{e}", rng.choice(["assisted", "assisted", "standard", "none"]), rng.choice(["left", "right"]))
            for c in range(30) for e in range(5)]
    path = write_csv(tmp_path / "votes.csv", ["case", "expert", "choice", "side"], rows)
    out = ok("preference", path)
    assert out["n_cases"] == 30 and out["wins"] + out["losses"] + out["ties"] == 30
    assert out["share"] == pytest.approx(out["wins"] / 30)
    assert out["position"]["votes"] == sum(r[2] != "none" for r in rows)
    assert out["votes_all"]["votes"] == 150


def test_detection_reports_each_finding_and_arm(tmp_path):
    rng = np.random.default_rng(75)
    rows = []
    for c in range(40):
        for finding in ("effusion", "pneumothorax"):
            truth = int(rng.random() < 0.4)
            for arm, reader in (("assisted", "a1"), ("standard", "s1")):
                rows.append((f"c{c}", arm, reader, finding, truth, int(rng.random() < (0.85 if truth else 0.1))))
    path = write_csv(tmp_path / "reads.csv", ["case", "arm", "reader", "finding", "truth", "call"], rows)
    out = ok("detection", path)
    assert out["arms"] == ["assisted", "standard"]
    assert [f["finding"] for f in out["findings"]] == ["effusion", "pneumothorax"]
    sens = out["findings"][0]["arms"][0]["sensitivity"]
    assert sens["low"] <= sens["estimate"] <= sens["high"]
    assert out["findings"][0]["mcnemar_sensitivity"]["df"] == 1


def test_delong_compares_two_scores(tmp_path):
    rng = np.random.default_rng(76)
    truth = (rng.random(80) < 0.4).astype(int)
    a = np.round(rng.normal(truth * 1.5, 1), 2)
    b = np.round(rng.normal(truth * 0.8, 1), 2)
    path = write_csv(tmp_path / "scores.csv", ["truth", "score_a", "score_b"], zip(truth, a, b))
    out = ok("delong", path)
    assert out["a"]["auc"] > out["b"]["auc"]
    assert out["difference"] == pytest.approx(out["a"]["auc"] - out["b"]["auc"])
    assert 0 <= out["pvalue"] <= 1


def test_mrmc_on_vandyke_prints_the_hillis_f(tmp_path):
    if not VANDYKE.exists():
        pytest.fail(f"the Van Dyke data are missing: {VANDYKE}", pytrace=False)
    out = ok("mrmc", VANDYKE)
    assert out["modality_foms"] == [pytest.approx(0.8970370, rel=5e-4), pytest.approx(0.9408374, rel=5e-4)]
    assert out["random"]["statistic"] == pytest.approx(4.456, rel=5e-4)
    assert out["fixed_readers"]["df2"] is None          # chi-square: no denominator df
    out = ok("mrmc", VANDYKE, "--fom", "sensitivity", "--threshold", "3")
    assert out["random"]["statistic"] == pytest.approx(6.689493, rel=5e-4)   # MRMCaov, binary_sens


def test_agreement_reports_icc_and_kappas(tmp_path):
    sf = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    rows = [(f"t{i}", f"j{j}", s) for i, row in enumerate(sf) for j, s in enumerate(row)]
    path = write_csv(tmp_path / "scores.csv", ["item", "rater", "score"], rows)
    out = ok("agreement", path)
    assert out["icc2"]["estimate"] == pytest.approx(0.2898, abs=5e-5)
    assert out["icc3"]["estimate"] == pytest.approx(0.7148, abs=5e-5)
    assert out["cohen_linear"] is None and out["fleiss"]["n_raters"] == 4


BAD_INPUTS = [
    ("paired", ["case", "arm"], [("c1", "assisted")], [], "missing column(s) y"),
    ("paired", ["case", "arm", "y"], [("c1", "assisted", "fast"), ("c1", "standard", "3")], [], "must be a number"),
    ("paired", ["case", "arm", "y"], [("c1", "assisted", "3"), ("c1", "placebo", "3")], [],
     "must be one of assisted, standard"),
    ("paired", ["case", "arm", "y"], [("c1", "assisted", "3"), ("c2", "standard", "3")], [], "needs both arms"),
    ("lmm", ["case", "arm", "y"], [("c1", "assisted", "3")], ["--random", "reader,case"], "missing column(s) reader"),
    ("clmm", ["case", "score"], [("c1", "3")], [], "missing column(s) arm"),
    ("preference", ["case", "expert", "choice"], [("c1", "e1", "maybe")], [],
     "must be one of assisted, standard, none"),
    ("preference", ["case", "expert", "choice", "side"], [("c1", "e1", "none", "up")], [],
     "must be one of left, right"),
    ("detection", ["case", "arm", "reader", "finding", "truth", "call"], [("c1", "assisted", "r", "f", "2", "1")], [],
     "must be one of 0, 1"),
    ("delong", ["truth", "score_a"], [("1", "0.3")], [], "missing column(s) score_b"),
    ("mrmc", ["reader", "case", "modality", "truth", "rating"], [("r1", "c1", "0", "1", "3")],
     ["--fom", "sensitivity"], "needs --threshold"),
    ("mrmc", ["reader", "case", "modality", "truth", "rating"],
     [("r1", "c1", "0", "1", "3"), ("r1", "c1", "1", "1", "3"), ("r1", "c2", "0", "0", "3")], [], "not fully crossed"),
    ("agreement", ["item", "rater", "score"], [("i1", "a", "3"), ("i1", "b", "4"), ("i2", "a", "2")], [],
     "did not score"),
]


@pytest.mark.parametrize("analysis,header,rows,options,message", BAD_INPUTS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(tmp_path, analysis, header, rows, options, message):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    proc = run_cli(analysis, path, *options)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


def test_missing_file_is_a_bad_input(tmp_path):
    proc = run_cli("paired", tmp_path / "nope.csv")
    assert proc.returncode == 2 and "No such file" in proc.stderr


def test_unknown_analysis_is_a_usage_error(tmp_path):
    proc = run_cli("anova", tmp_path / "x.csv")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
