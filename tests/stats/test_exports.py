"""Exports: long-format files per entity in CSV, XLSX, SPSS and Stata, the data dictionary, masking, the zip."""
from __future__ import annotations

import csv
import hashlib
import io
import tempfile
import zipfile

import pytest

from stats import dataset, exports, simulate
from tests.stats.test_runs_fixtures import assert_masked


@pytest.fixture(scope="module")
def snapshot():
    trial, rows = simulate.simulate_rows(n_readers=4, n_cases=12, n_experts=3, seed=3)
    return dataset.build_snapshot(trial=trial, rows=rows)


@pytest.fixture(scope="module")
def masked_zip(snapshot):
    view = dataset.masked(snapshot, {"X": "standard", "Y": "assisted"})
    return view, exports.build_zip(view, root="cxr-trial-sim-run001", masked=True, readme="# Test export")


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n.split("/", 1)[1]: archive.read(n) for n in archive.namelist()}


def _read_stat(name: str, data: bytes):
    import pyreadstat

    with tempfile.NamedTemporaryFile(suffix=name[-4:]) as fh:
        fh.write(data)
        fh.flush()
        return (pyreadstat.read_sav if name.endswith(".sav") else pyreadstat.read_dta)(fh.name)


def test_the_snapshot_hash_does_not_depend_on_row_order():
    trial, rows = simulate.simulate_rows(n_readers=4, n_cases=6, n_experts=3, seed=1)
    first = dataset.sha256(dataset.snapshot_bytes(dataset.build_snapshot(trial=trial, rows=rows)))
    shuffled = {k: list(reversed(v)) for k, v in rows.items()}
    assert dataset.sha256(dataset.snapshot_bytes(dataset.build_snapshot(trial=trial, rows=shuffled))) == first
    rows["reads"][0]["active_seconds"] += 0.001
    assert dataset.sha256(dataset.snapshot_bytes(dataset.build_snapshot(trial=trial, rows=rows))) != first


def test_every_entity_is_one_whole_file_in_each_format(masked_zip):
    view, data = masked_zip
    members = _members(data)
    for entity in dataset.ENTITIES:
        names, rows = dataset.table(view, entity.name)
        with_header = list(csv.reader(io.StringIO(members[f"csv/{entity.name}.csv"].decode())))
        assert with_header[0] == names and len(with_header) == len(rows) + 1
        for kind in ("sav", "dta"):
            folder = "spss" if kind == "sav" else "stata"
            frame, meta = _read_stat(f"x.{kind}", members[f"{folder}/{entity.name}.{kind}"])
            assert list(frame.columns) == names and len(frame) == len(rows)
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(members["xlsx/cxr-trial-sim-run001.xlsx"]), read_only=True)
    for entity in dataset.ENTITIES:
        assert sum(1 for _ in book[entity.name].iter_rows()) == len(dataset.table(view, entity.name)[1]) + 1
    assert "data_dictionary" in book.sheetnames


def test_csv_values_round_trip_exactly(masked_zip):
    view, data = masked_zip
    members = _members(data)
    names, rows = dataset.table(view, "reads")
    parsed = list(csv.DictReader(io.StringIO(members["csv/reads.csv"].decode())))
    i = names.index("active_seconds")
    assert [float(r["active_seconds"]) for r in parsed] == [row[i] for row in rows]  # bit for bit


def test_statistics_files_keep_values_and_labels(masked_zip):
    view, data = masked_zip
    members = _members(data)
    names, rows = dataset.table(view, "quality_scores")
    frame, meta = _read_stat("q.sav", members["spss/quality_scores.sav"])
    assert frame["score"].tolist() == [float(r[names.index("score")]) for r in rows]
    assert frame["case"].tolist() == [r[names.index("case")] for r in rows]
    assert meta.column_names_to_labels["score"].startswith("Overall report quality")
    frame, meta = _read_stat("r.dta", members["stata/reads.dta"])
    assert str(frame["submitted_at"].dtype).startswith("datetime64")


def test_the_data_dictionary_describes_every_column_and_the_withheld_ones_with_why(masked_zip):
    view, data = masked_zip
    members = _members(data)
    dictionary = list(csv.DictReader(io.StringIO(members["data_dictionary.csv"].decode())))
    described = {(d["file"], d["column"]) for d in dictionary if not d["withheld"]}
    for entity in dataset.ENTITIES:
        for name in view["columns"][entity.name]:
            assert (entity.name, name) in described
    assert ("reports", "draft_kept_share") not in described
    withheld = {(d["file"], d["column"]): d["withheld"] for d in dictionary if d["withheld"]}
    assert "exists in one arm only" in withheld[("reports", "draft_kept_share")]
    assert all(d["description"] and d["type"] for d in dictionary)
    assert "## reads" in members["data_dictionary.md"].decode()
    unmasked = {(d["file"], d["column"]): d["withheld"] for d in dataset.dictionary_rows(masked_view=False)}
    assert unmasked[("reports", "draft_kept_share")] == ""


def test_a_masked_export_names_no_arm(masked_zip, snapshot):
    _, data = masked_zip
    for name, member in _members(data).items():
        text = member.decode("latin-1")
        if name.endswith(".xlsx"):
            text = " ".join(v.decode() for v in _members_flat(member).values())
        assert_masked(text, name)
    # and the arms really are coded: X is the standard arm here
    coded = dataset.view_records(dataset.masked(snapshot, {"X": "standard", "Y": "assisted"}), "reports")
    real = {r["report"]: r for r in dataset.view_records(dataset.unmasked(snapshot), "reports")}
    assert all((c["arm"] == "X") == (real[c["report"]]["arm"] == "standard") for c in coded)


def _members_flat(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def test_the_manifest_lists_the_sha256_of_every_file(masked_zip):
    _, data = masked_zip
    members = _members(data)
    lines = members["MANIFEST.sha256"].decode().splitlines()
    listed = {line.split("  ", 1)[1].split("/", 1)[1]: line.split("  ", 1)[0] for line in lines}
    assert set(listed) == set(members) - {"MANIFEST.sha256"}
    for name, digest in listed.items():
        assert hashlib.sha256(members[name]).hexdigest() == digest


def test_csv_files_are_reproducible(snapshot):
    view = dataset.masked(snapshot, {"X": "assisted", "Y": "standard"})
    a = _members(exports.build_zip(view, root="r", masked=True, formats=("csv",)))
    b = _members(exports.build_zip(view, root="r", masked=True, formats=("csv",)))
    assert {k: v for k, v in a.items() if k.startswith("csv/")} == {k: v for k, v in b.items() if k.startswith("csv/")}
