"""The analysis dataset as files (no Django): long tables in CSV, XLSX, SPSS and Stata, a data dictionary, one zip.

Column names are those of the data dictionary (stats.dataset.ENTITIES) and never change without a
new dataset format. Every file holds its whole table: nothing is split into pages. The CSV files
are byte-for-byte reproducible from the run's snapshot (SPSS and XLSX files carry their creation
time); MANIFEST.sha256 lists every member's SHA-256.

Text is made safe for spreadsheets in the CSV and XLSX files (OWASP, CSV injection): a text cell that
begins with = + - @, a tab or a carriage return (after any single quotes it already begins with) is
written with one single quote in front (core.text.escape_formula), so that a spreadsheet shows it as
text instead of running it. Numbers are never touched. The re-run (stats.rerun) takes that quote off
again, so the values it analyses are the snapshot's; the SPSS and Stata files hold the text as it is.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.text import escape_formula

from . import dataset

FORMATS = ("csv", "xlsx", "sav", "dta")
XLSX_MAX_ROWS = 1_048_575     # Excel's sheet limit, less the header row
STATA_LABEL_MAX = 80
ZIP_DATE = (2000, 1, 1, 0, 0, 0)


def csv_bytes(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """RFC 4180 CSV, UTF-8, header row; empty cell = missing; numbers exactly as stored (Python's repr); text that a
    spreadsheet would run as a formula escaped (module docstring)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if v is None else escape_formula(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def _types(entity: str, names: Sequence[str]) -> list[str]:
    by_name = {c.name: c.type for c in dataset.ENTITY[entity].columns}
    return [by_name.get(n, "string") for n in names]


def _datetime(value: str | None) -> datetime | None:
    # Spreadsheets and statistics packages have no time zones: naive UTC (the dictionary says so).
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


def _frame(entity: str, names: Sequence[str], rows: Sequence[Sequence[Any]]):
    import pandas as pd

    data = {}
    for i, (name, kind) in enumerate(zip(names, _types(entity, names))):
        values = [row[i] for row in rows]
        if kind in ("integer", "number", "boolean"):
            data[name] = pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
        elif kind == "datetime":
            data[name] = pd.Series(pd.to_datetime([_datetime(v) for v in values]), dtype="datetime64[us]")
        else:
            data[name] = pd.Series(["" if v is None else str(v) for v in values], dtype=object)
    return pd.DataFrame(data, columns=list(names))


def _labels(entity: str, names: Sequence[str], limit: int | None = None) -> list[str]:
    by_name = {c.name: c.description for c in dataset.ENTITY[entity].columns}
    out = []
    for n in names:
        label = by_name.get(n, "")
        out.append(label if limit is None or len(label) <= limit else label[: limit - 1] + "…")
    return out


def _statistics_file(kind: str, entity: str, names, rows) -> bytes:
    import pyreadstat

    frame = _frame(entity, names, rows)
    fd, path = tempfile.mkstemp(suffix="." + kind)
    os.close(fd)
    try:
        if kind == "sav":
            pyreadstat.write_sav(frame, path, column_labels=_labels(entity, names), file_label=entity)
        else:
            pyreadstat.write_dta(frame, path, column_labels=_labels(entity, names, STATA_LABEL_MAX),
                                 file_label=entity[:STATA_LABEL_MAX])
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def _cell_text(value: Any) -> Any:
    # A worksheet cannot hold the control characters XML 1.0 forbids (a pasted or generated report may have
    # them): they are left out there; the CSV files keep the text exactly. A text that begins like a formula is
    # escaped, as in the CSV files (openpyxl would store "=…" as a formula).
    if isinstance(value, str):
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return escape_formula(ILLEGAL_CHARACTERS_RE.sub("", value))
    return value


def xlsx_bytes(view: Mapping[str, Any], *, dictionary: list[dict[str, str]]) -> tuple[bytes, list[str]]:
    """One workbook, one sheet per entity (whole, never split), plus the data dictionary sheet."""
    from openpyxl import Workbook

    notes = []
    book = Workbook(write_only=True)
    for entity in dataset.ENTITIES:
        names, rows = dataset.table(view, entity.name)
        sheet = book.create_sheet(entity.name[:31])
        sheet.append(list(names))
        if len(rows) > XLSX_MAX_ROWS:
            notes.append(f"{entity.name}: {len(rows)} rows exceed a spreadsheet's limit; it is in the CSV, SPSS and "
                         "Stata files only.")
            sheet.append([f"{len(rows)} rows: too many for a spreadsheet; see csv/{entity.name}.csv"])
            continue
        kinds = _types(entity.name, names)
        for row in rows:
            sheet.append([_datetime(v) if k == "datetime" else _cell_text(v) for v, k in zip(row, kinds)])
    sheet = book.create_sheet("data_dictionary")
    keys = list(dictionary[0]) if dictionary else []
    sheet.append(keys)
    for row in dictionary:
        sheet.append([_cell_text(row[k]) for k in keys])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue(), notes


def dictionary_csv(dictionary: list[dict[str, str]]) -> bytes:
    keys = list(dictionary[0]) if dictionary else []
    return csv_bytes(keys, [[row[k] for k in keys] for row in dictionary])


def dictionary_markdown(dictionary: list[dict[str, str]], *, title: str) -> bytes:
    lines = [f"# Data dictionary: {title}", "",
             "Long format: one file per entity, one row per observation; the key columns identify a row.",
             "Missing values are empty cells (CSV), empty cells (XLSX), system-missing (SPSS) or . / \"\" (Stata).",
             "Times are UTC: ISO 8601 with offset in the CSV files, naive UTC date-times elsewhere.",
             "Read and report ids are surrogates drawn at random for this analysis run (never the platform's "
             "database ids), the same in every file.",
             "Text cells (CSV and XLSX) that begin with =, +, -, @, a tab or a carriage return, after any single "
             "quotes, have one more single quote in front, so that a spreadsheet does not run them as formulas; "
             "take it off to get the text as written (`python -m stats.analysis` does). Numbers are never changed.",
             ""]
    withheld = [row for row in dictionary if row.get("withheld")]
    if withheld:
        lines += ["## Withheld until unblinding", "",
                  "These columns are in no file of this export: each would tell which arm is which.", "",
                  "| file | column | description | why withheld |", "|---|---|---|---|"]
        for row in withheld:
            cells = [row["file"], row["column"], row["description"], row["withheld"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    current = None
    for row in dictionary:
        if row.get("withheld"):
            continue
        if row["file"] != current:
            current = row["file"]
            lines += ["", f"## {current}", "", row["file_description"], "",
                      "| column | type | unit | values | description | key |", "|---|---|---|---|---|---|"]
        cells = [row["column"], row["type"], row["unit"], row["values"], row["description"], row["key"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_zip(view: Mapping[str, Any], *, root: str, masked: bool, files: Mapping[str, bytes] | None = None,
              readme: str = "", formats: Sequence[str] = FORMATS) -> bytes:
    """The export zip: <root>/csv|xlsx|spss|stata/…, the data dictionary, README, extra `files`, MANIFEST.sha256."""
    dictionary = dataset.dictionary_rows(masked_view=masked, surrogates=view.get("ids") != "database")
    members: dict[str, bytes] = {}
    notes: list[str] = []
    for entity in dataset.ENTITIES:
        names, rows = dataset.table(view, entity.name)
        if "csv" in formats:
            members[f"csv/{entity.name}.csv"] = csv_bytes(names, rows)
        if "sav" in formats:
            members[f"spss/{entity.name}.sav"] = _statistics_file("sav", entity.name, names, rows)
        if "dta" in formats:
            members[f"stata/{entity.name}.dta"] = _statistics_file("dta", entity.name, names, rows)
    if "xlsx" in formats:
        members[f"xlsx/{root}.xlsx"], notes = xlsx_bytes(view, dictionary=dictionary)
    members["data_dictionary.csv"] = dictionary_csv(dictionary)
    members["data_dictionary.md"] = dictionary_markdown(dictionary, title=root)
    for name, data in (files or {}).items():
        members[name] = data
    text = readme + ("\n\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
    members["README.md"] = (text.rstrip() + "\n").encode("utf-8")
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {root}/{name}\n" for name, data in sorted(members.items()))
    members["MANIFEST.sha256"] = manifest.encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{root}/{name}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()
