"""The demo trial's export re-run by `python -m stats.analysis` and by the export's R script, printed.

Run by hand from the repository root:  python bench/stats_reproduce.py [--cases 40] [--keep DIR]

Builds the demo (manage.py setup_demo --untrained-model: the results trial is read, scored, locked,
its default plan frozen, unblinded and analysed) in a temporary CXR_VAR_DIR, so that the developer's
database is not touched; exports the results trial's run as its statistician downloads it; re-runs
the frozen plan on the zip (`python -m stats.analysis plan.json ZIP --check`: byte equality with
results.json); then runs analysis/reference_analysis.R and prints, for each number R gives, ours,
R's and their relative difference. R needs lme4, lmerTest and ordinal.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT = """
from django.contrib.auth import get_user_model
from stats import services
from stats.models import AnalysisRun
run = AnalysisRun.objects.get(trial__code="demo-cxr-results")
name, data = services.export_run(run=run, by=get_user_model().objects.get(username="statistician"))
open({path!r}, "wb").write(data)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--keep", help="keep the demo's files and the export here")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="cxr-reproduce-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CXR_DEVELOPMENT": "1", "CXR_DEMO": "1", "CXR_VAR_DIR": str(work / "var"),
           "CELERY_TASK_ALWAYS_EAGER": "1"}
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    started = time.perf_counter()
    subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
    subprocess.run([*manage, "setup_demo", "--untrained-model", "--cases", str(args.cases), "--live-cases", "4",
                    "--timeout", "1200"], env=env, check=True, capture_output=True)
    archive = work / "export.zip"
    subprocess.run([*manage, "shell", "-c", EXPORT.format(path=str(archive))], env=env, check=True,
                   capture_output=True)
    print(f"demo with {args.cases} cases built and exported in {time.perf_counter() - started:.0f} s")
    folder = work / "export"
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as z:
        z.extractall(folder)
    (root,) = list(folder.iterdir())
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stats.analysis", str(root / "plan.json"), str(archive), "--check"],
                          cwd=ROOT, capture_output=True, text=True)
    print(f"python -m stats.analysis ({time.perf_counter() - started:.1f} s, exit {proc.returncode}): "
          f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    if shutil.which("Rscript") is None:
        print("Rscript not found: the R check is skipped")
        return proc.returncode
    started = time.perf_counter()
    r = subprocess.run(["Rscript", "--vanilla", str(root / "analysis" / "reference_analysis.R"), str(root)],
                       capture_output=True, text=True)
    print(f"Rscript analysis/reference_analysis.R ({time.perf_counter() - started:.1f} s, exit {r.returncode})")
    results = json.loads((root / "results.json").read_text())["analyses"]
    for line in r.stdout.splitlines():
        key, quantity, value = line.split("\t")
        a = results[key]
        ours = a["summary"]["difference_seconds"] if quantity == "difference_seconds" else a["result"][quantity]
        rel = abs(ours - float(value)) / max(abs(float(value)), 1e-300)
        print(f"  {key:24s} {quantity:18s} ours {ours:+.12g}  R {float(value):+.12g}  relative difference {rel:.1e}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
