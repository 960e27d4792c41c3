"""Re-run a frozen analysis plan on an exported dataset (no Django): `python -m stats.analysis PLAN.json DATA`.

DATA is the zip a statistician downloads from an analysis run, or its unzipped folder. The tables are
read from its CSV files (the reference form) with the types of the data dictionary: an integer
column as int, a number as Python reads the text the export wrote (repr of a float, so every value
comes back bit for bit; an integer written without a point stays an int), a boolean 0/1 as int, an
empty cell as missing, text as text (with the single quote that the export put in front of text a
spreadsheet would run as a formula taken off again: core.text.unescape_formula). The trial's
design and findings come from trial.json. Read and report ids are the run's surrogates, as the run
analysed them. An unblinded export holds the real arms: arms.csv says which is X, and the arms are
recoded to X/Y as the run saw them (and the rows sorted again as the run's view had them). A
masked export lacks the columns withheld before unblinding; the sections that need them are
withheld, as in the results the platform shows before unblinding.

The results are printed as canonical JSON (sorted keys, no whitespace, UTF-8), the form of
results.json in the export. `--check` compares them with that file: byte for byte, and where they
differ, path by path with the largest absolute and relative difference of the numbers. With the
same code (run.json's code_version: stats/methods and the run's sources hashed) and the same numpy,
scipy and BLAS the output is identical; another build of the libraries may move the last bits of a
fit (an optimum found in a different number of steps), which the numeric comparison then shows.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from core.text import unescape_formula

from . import analysis, dataset
from .plan import canonical_json, frozen_document

__all__ = ["Export", "ExportError", "read_view", "rerun", "compare", "main"]


class ExportError(Exception):
    """The export cannot be read; the message says what is missing or wrong."""


class Export:
    """The files of an export, from a zip or a folder, by their path below the export's root folder."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.files: dict[str, bytes] = {}
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if not name.endswith("/"):
                        self.files[name] = archive.read(name)
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file():
                    self.files[file.relative_to(path).as_posix()] = file.read_bytes()
        else:
            raise ExportError(f"{path}: neither an export zip nor a folder")
        # the members sit under one root folder (cxr-trial-<code>-runNNN/…) unless DATA is that folder
        roots = {PurePosixPath(n).parts[0] for n in self.files if n.endswith("csv/cases.csv")
                 and len(PurePosixPath(n).parts) == 3}
        if "csv/cases.csv" in self.files:
            prefix = ""
        elif len(roots) == 1:
            prefix = next(iter(roots)) + "/"
        else:
            raise ExportError(f"{path}: no csv/cases.csv (is this an analysis-run export?)")
        self.files = {n[len(prefix):]: data for n, data in self.files.items() if n.startswith(prefix)}

    def has(self, name: str) -> bool:
        return name in self.files

    def bytes(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise ExportError(f"the export has no {name}") from None

    def json(self, name: str) -> Any:
        return json.loads(self.bytes(name).decode("utf-8"))

    def csv(self, name: str) -> tuple[list[str], list[list[str]]]:
        rows = list(csv.reader(io.StringIO(self.bytes(name).decode("utf-8"), newline="")))
        if not rows:
            raise ExportError(f"{name}: empty file (a header row is needed)")
        return rows[0], rows[1:]

    def manifest_problems(self) -> list[str]:
        """Files whose SHA-256 differs from MANIFEST.sha256 (or that are missing)."""
        if not self.has("MANIFEST.sha256"):
            return ["no MANIFEST.sha256"]
        problems = []
        for line in self.bytes("MANIFEST.sha256").decode("utf-8").splitlines():
            digest, _, name = line.partition("  ")
            name = name.split("/", 1)[1] if "/" in name else name
            data = self.files.get(name)
            if data is None:
                problems.append(f"{name}: listed in MANIFEST.sha256, not in the export")
            elif hashlib.sha256(data).hexdigest() != digest:
                problems.append(f"{name}: its SHA-256 differs from MANIFEST.sha256")
        return problems


def _number(text: str) -> int | float:
    # the export wrote Python's repr: an int has no point or exponent, a float always has one (or is inf/nan)
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_value(text: str, kind: str) -> Any:
    """A CSV cell back to the value the snapshot held (module docstring)."""
    if text == "":
        return None
    if kind == "integer":
        return int(text)
    if kind == "number":
        return _number(text)
    if kind == "boolean":
        return {"True": 1, "False": 0}[text] if text in ("True", "False") else int(text)
    return unescape_formula(text)


def read_view(export: Export) -> tuple[dict[str, Any], bool]:
    """(the view the run analysed, masked?): every entity's rows typed as the dictionary says, arms as X/Y."""
    tables, columns = {}, {}
    for entity in dataset.ENTITIES:
        kinds = {c.name: c.type for c in entity.columns}
        header, rows = export.csv(f"csv/{entity.name}.csv")
        unknown = [h for h in header if h not in kinds]
        if unknown:
            raise ExportError(f"csv/{entity.name}.csv: columns not in the data dictionary: {', '.join(unknown)}")
        types = [kinds[h] for h in header]
        tables[entity.name] = [[parse_value(v, k) for v, k in zip(row, types)] for row in rows]
        columns[entity.name] = header
    masked = not export.has("arms.csv")
    view = {"format": dataset.FORMAT, "trial": {}, "tables": tables, "columns": columns}
    if masked:
        return view, True
    header, rows = export.csv("arms.csv")
    mapping = {row[header.index("code")]: row[header.index("arm")] for row in rows}
    complete = all(columns[e.name] == e.names for e in dataset.ENTITIES)
    if not complete:
        raise ExportError("an unblinded export must hold every column of the data dictionary")
    return dataset.coded({"tables": tables}, mapping), False


def read_plan_document(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the plan content, the frozen document when the file is one: {"trial", "version", "plan"})."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read the plan ({exc})") from exc
    if isinstance(document, dict) and {"trial", "version", "plan"} <= set(document):
        return document["plan"], document
    if isinstance(document, dict) and "primary" in document:
        return document, None
    raise ExportError(f"{path}: not an analysis plan (expected the plan.json of an export or a plan object)")


def rerun(plan: Mapping[str, Any], export: Export, *, design: str | None = None,
          findings: Sequence[str] | None = None, progress=None) -> dict[str, Any]:
    """The results the platform stores for this plan and export, as an analyst sees them (withheld when masked)."""
    view, masked = read_view(export)
    facts = export.json("trial.json") if export.has("trial.json") else {}
    design = design or facts.get("design")
    findings = list(findings if findings is not None else facts.get("findings") or [])
    if not design or (not findings and view["tables"]["reader_calls"]):
        raise ExportError("the export has no trial.json: give --design and --findings")
    results = analysis.run_analysis(view, plan=plan, design=design, findings=findings, progress=progress)
    return analysis.without_withheld(results) if masked else results


def _walk(a: Any, b: Any, path: str, out: list[tuple[str, str, float]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append((f"{path}/{k}", "only in " + ("the stored results" if k in a else "the re-run"), math.inf))
            else:
                _walk(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", out)
    elif (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
          and not isinstance(b, bool)):
        if a != b:
            rel = abs(a - b) / max(abs(a), abs(b))
            out.append((path, f"{a!r} vs {b!r} (abs {abs(a - b):.3g}, rel {rel:.3g})", rel))
    elif a != b:
        out.append((path, f"{json.dumps(a)[:80]} vs {json.dumps(b)[:80]}", math.inf))


def compare(stored: Any, rerun_results: Any) -> dict[str, Any]:
    """Byte equality of the canonical JSON, and else every differing path with its relative difference."""
    a, b = canonical_json(stored), canonical_json(rerun_results)
    diffs: list[tuple[str, str, float]] = []
    if a != b:
        _walk(stored, rerun_results, "", diffs)
    return {"identical": a == b, "sha256_stored": hashlib.sha256(a).hexdigest(),
            "sha256_rerun": hashlib.sha256(b).hexdigest(), "differences": diffs,
            "max_relative_difference": max((d[2] for d in diffs), default=0.0)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stats.analysis",
        description="Re-run a frozen analysis plan on an exported dataset and print the results JSON (canonical).")
    parser.add_argument("plan", metavar="PLAN.json", help="the plan.json of the export (or any plan document)")
    parser.add_argument("data", metavar="DATA", help="the export zip, or its unzipped folder")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here instead of standard output")
    parser.add_argument("--check", action="store_true",
                        help="compare with the export's results.json; exit 1 if they differ")
    parser.add_argument("--design", help="the trial design, for an export without trial.json")
    parser.add_argument("--findings", help="the trial's findings, comma-separated, for an export without trial.json")
    parser.add_argument("--progress", action="store_true", help="print the stages on standard error")
    args = parser.parse_args(argv)
    try:
        content, document = read_plan_document(args.plan)
        export = Export(args.data)
        for problem in export.manifest_problems():
            print(f"warning: {problem}", file=sys.stderr)
        run_info = export.json("run.json") if export.has("run.json") else {}
        if document is not None and run_info.get("plan_sha256"):
            digest = hashlib.sha256(canonical_json(frozen_document(trial_code=document["trial"],
                                                                   version=document["version"],
                                                                   content=content))).hexdigest()
            if digest != run_info["plan_sha256"]:
                print(f"warning: this plan's SHA-256 {digest[:16]}… is not the run's {run_info['plan_sha256'][:16]}…",
                      file=sys.stderr)
        findings = [f.strip() for f in args.findings.split(",")] if args.findings else None
        progress = (lambda pct, stage: print(f"{pct:3d} % {stage}", file=sys.stderr)) if args.progress else None
        results = rerun(content, export, design=args.design, findings=findings, progress=progress)
    except (ExportError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = canonical_json(results)
    if args.out:
        Path(args.out).write_bytes(text)
    else:
        sys.stdout.buffer.write(text + b"\n")
        sys.stdout.flush()
    if not args.check:
        return 0
    if not export.has("results.json"):
        print("error: the export has no results.json to compare with", file=sys.stderr)
        return 2
    outcome = compare(export.json("results.json"), results)
    code_now = _code_version_here()
    code_then = run_info.get("code_version", {})
    for key in ("methods_sha256", "analysis_sha256"):
        if code_then.get(key) and code_then[key] != code_now.get(key):
            print(f"note: the run's {key} differs from this code's: results may differ", file=sys.stderr)
    if outcome["identical"]:
        print(f"identical: the re-run equals results.json byte for byte (SHA-256 {outcome['sha256_rerun']})",
              file=sys.stderr)
        return 0
    print(f"different: {len(outcome['differences'])} values differ, the largest relative difference "
          f"{outcome['max_relative_difference']:.3g}", file=sys.stderr)
    for path, what, _ in outcome["differences"][:50]:
        print(f"  {path}: {what}", file=sys.stderr)
    return 1


def _code_version_here() -> dict[str, str]:
    from .provenance import code_version

    return code_version()
