"""Where a run's numbers come from (no Django): the code version, and the history of the plan it executed.

`code_version` hashes the sources that decide the numbers (stats/methods and the run's modules), so
that a re-run can tell whether it runs the same code. `plan_history` lists every version of the
analysis plan with its freeze time and flags the versions frozen after the database lock or after a
run whose (masked) results had been seen: a plan amended then is not the plan written before the
data were known, and the report says so. The order of events is the audit chain's (trial.audit
numbers its events without gaps, in the order they happened), which does not depend on any clock.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METHODS_DIR = HERE / "methods"
# Files whose text decides the numbers of a run; their hash is recorded as its code version.
ANALYSIS_FILES = ("analysis.py", "dataset.py", "plan.py", "estimands.py")


def code_version() -> dict[str, str]:
    """The package version and the SHA-256 of the sources that compute the numbers (stats/methods and the run)."""
    try:
        package = importlib.metadata.version("cxr-trial")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed as a package
        package = "unknown"

    def digest(paths: list[Path]) -> str:
        h = hashlib.sha256()
        for path in paths:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()

    import numpy
    import scipy
    import statsmodels

    return {
        "package": package,
        "methods_sha256": digest(sorted(METHODS_DIR.glob("*.py"))),
        "analysis_sha256": digest([HERE / name for name in ANALYSIS_FILES if (HERE / name).exists()]),
        "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
    }


def plan_history(*, versions: Iterable[Mapping[str, Any]], lock: Mapping[str, Any] | None,
                 runs: Iterable[Mapping[str, Any]], unblinding: Mapping[str, Any] | None = None,
                 used_version: int | None = None) -> dict[str, Any]:
    """Every plan version with its freeze, and the flags a reader of the report must see.

    `versions`: version, created_at, frozen_at (None: a draft), sha256, frozen_by and freeze_seq (the audit
    event id of its freeze). `lock`: at and seq of the database lock (the trial's move to "locked"), None if
    the trial was never locked. `runs`: number, plan_version, finished_at, finished_seq and masked (run before
    unblinding) of every finished run. A version is flagged when it was frozen after the lock, or after a
    masked run had finished; `used_version` marks the version a run executed.
    """
    runs = sorted(runs, key=lambda r: r["finished_seq"])
    out = []
    for v in sorted(versions, key=lambda v: v["version"]):
        entry = {k: v.get(k) for k in ("version", "created_at", "frozen_at", "sha256", "frozen_by")}
        flags = []
        seq = v.get("freeze_seq")
        if v.get("frozen_at") is not None and seq is not None:
            verb = "amended" if v["version"] > 1 else "first frozen"
            if lock is not None and seq > lock["seq"]:
                flags.append(f"{verb} after the database lock" + (f" ({lock['at']})" if lock.get("at") else ""))
            seen = [r for r in runs if r["masked"] and r["finished_seq"] < seq]
            if seen:
                flags.append(f"{verb} after masked results had been seen (run " +
                             ", ".join(str(r["number"]) for r in seen) + ")")
        entry["amendment"] = v["version"] > 1
        entry["flags"] = flags
        entry["used_by_this_run"] = used_version is not None and v["version"] == used_version
        out.append(entry)
    used = next((e for e in out if e["used_by_this_run"]), None)
    return {"versions": out, "locked_at": lock.get("at") if lock else None,
            "unblinded_at": unblinding.get("at") if unblinding else None,
            "runs": [{k: r.get(k) for k in ("number", "plan_version", "finished_at", "masked")} for r in runs],
            "used_version": used_version, "used_version_flagged": bool(used and used["flags"])}
