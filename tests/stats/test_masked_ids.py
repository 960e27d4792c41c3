"""Masked datasets carry no arm in their ids or row order, and none in a withheld column (issue 13, item 1).

Reads of a case used to be created assisted first, so that in a masked export "the lower read id of
each case is the assisted one" was right in every case. The ids of every view of a run's data are now
surrogates, the reads and reports numbered in a random order drawn for the run; these tests guess the
arm from the ids and the rows' order and ask an exact binomial test whether they do better than a coin.
"""
from __future__ import annotations

import csv
import io
import tempfile
from collections import defaultdict

import pytest
from django.core.files.storage import default_storage
from scipy.stats import binomtest

from reading.models import Read, Report
from stats import dataset, services, simulate
from tests.signing import move
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    build_trial,
    complete_trial,
    csv_rows,
    freeze_default_plan,
    run_now,
    zip_members,
)

# A guessing rule "passes" when a two-sided exact binomial test against 1/2 gives a p-value above this. With 40
# cases the old pattern (40 of 40) has p = 1.8e-12; a fair coin fails it about once in 10,000 runs of the test.
ALPHA = 1e-4
N_CASES = 40


def _per_case_guess(rows: list[dict], *, id_column: str, real_arm) -> tuple[int, int]:
    """(cases where the lowest id's row is the assisted one, cases with rows of both arms)."""
    by_case: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_case[row["case"]].append(row)
    hits = n = 0
    for case_rows in by_case.values():
        if len({real_arm(r) for r in case_rows}) != 2:
            continue
        lowest = min(case_rows, key=lambda r: int(r[id_column]))
        hits += real_arm(lowest) == "assisted"
        n += 1
    return hits, n


def _first_listed_guess(rows: list[dict], *, real_arm) -> tuple[int, int]:
    """(cases whose first row in the file is the assisted one, cases with rows of both arms)."""
    first: dict[str, dict] = {}
    arms: dict[str, set] = defaultdict(set)
    for row in rows:
        first.setdefault(row["case"], row)
        arms[row["case"]].add(real_arm(row))
    both = [c for c in first if len(arms[c]) == 2]
    return sum(real_arm(first[c]) == "assisted" for c in both), len(both)


@pytest.fixture
def masked_run(complete_trial, django_capture_on_commit_callbacks, monkeypatch):
    sim = complete_trial(n_cases=N_CASES, code="mi")
    freeze_default_plan(sim)
    # X is the standard arm, so that an order that follows the real names (assisted < standard) shows
    monkeypatch.setattr(services, "_new_mapping", lambda trial: {"X": "standard", "Y": "assisted"})
    run = run_now(sim, django_capture_on_commit_callbacks)
    assert run.status == "done", run.error
    _, data = services.export_run(run=run, by=sim.statistician)
    return sim, run, zip_members(data)


@pytest.mark.django_db
def test_the_reads_of_a_case_are_database_ids_in_arm_order_so_the_old_pattern_is_there_to_be_caught(masked_run):
    """The premise: without surrogates, the lower database id of each case is the assisted read."""
    sim, _, _ = masked_run
    rows = [{"case": r.case.code, "read": r.pk, "arm": r.arm} for r in Read.objects.filter(trial=sim.trial)
            .select_related("case")]
    hits, n = _per_case_guess(rows, id_column="read", real_arm=lambda r: r["arm"])
    assert n == N_CASES
    # If this no longer holds (reads created in random arm order), the surrogates are a second line of defence.
    assert hits in (0, n) or binomtest(hits, n).pvalue > ALPHA


@pytest.mark.django_db
def test_in_a_masked_export_ids_and_row_order_guess_the_arm_no_better_than_chance(masked_run):
    _, run, files = masked_run
    real = run.arm_mapping  # the test knows the mapping: X → standard here

    def real_arm(row):
        return real[row["arm"]]

    reads = csv_rows(files["csv/reads.csv"])
    reports = [r for r in csv_rows(files["csv/reports.csv"]) if r["final"] == "1"]
    read_arm = {r["read"]: r for r in reads}
    calls = [{**c, "arm": read_arm[c["read"]]["arm"]} for c in csv_rows(files["csv/reader_calls.csv"])]
    events = [{**e, "case": read_arm[e["read"]]["case"], "arm": read_arm[e["read"]]["arm"]}
              for e in csv_rows(files["csv/reading_events.csv"])]
    rules = {
        "the lower read id of a case is the assisted read": _per_case_guess(reads, id_column="read",
                                                                            real_arm=real_arm),
        "the lower report id of a case is the assisted report": _per_case_guess(reports, id_column="report",
                                                                                real_arm=real_arm),
        "the read listed first in reads.csv": _first_listed_guess(reads, real_arm=real_arm),
        "the report listed first in reports.csv": _first_listed_guess(reports, real_arm=real_arm),
        "the read listed first in reader_calls.csv": _first_listed_guess(calls, real_arm=real_arm),
        "the read listed first in reading_events.csv": _first_listed_guess(events, real_arm=real_arm),
    }
    for rule, (hits, n) in rules.items():
        assert n == N_CASES, rule
        p = binomtest(hits, n, 0.5).pvalue
        assert p > ALPHA, f"{rule}: right in {hits} of {n} cases (binomial p = {p:.2g})"
    # The ids are surrogates 1…n, not the database's.
    assert sorted(int(r["read"]) for r in reads) == list(range(1, len(reads) + 1))
    assert sorted(int(r["report"]) for r in csv_rows(files["csv/reports.csv"])) == list(
        range(1, Report.objects.filter(read__trial=run.trial).count() + 1))


@pytest.mark.django_db
def test_within_a_case_rows_follow_the_arm_code_never_the_real_arm_names(masked_run):
    """quality_scores, whose key holds the arm, lists a case's X rows before its Y rows: its order says nothing the
    codes do not. (Sorted by the real names, "assisted" < "standard" put the assisted rows first: the mapping, given
    away in every case.)"""
    _, _, files = masked_run
    seen: dict[str, list[str]] = defaultdict(list)
    for row in csv_rows(files["csv/quality_scores.csv"]):
        seen[row["case"]].append(row["arm"])
    assert len(seen) == N_CASES and all(arms == sorted(arms) and set(arms) == {"X", "Y"} for arms in seen.values())


@pytest.mark.django_db
def test_surrogate_ids_are_the_same_in_every_file_of_a_masked_export(masked_run):
    _, _, files = masked_run
    reads = {r["read"]: r for r in csv_rows(files["csv/reads.csv"])}
    for name in ("reports", "reader_calls", "quality_scores"):
        for row in csv_rows(files[f"csv/{name}.csv"]):
            read = reads[row["read"]]
            assert (read["case"], read["reader"], read["arm"]) == (row["case"], row["reader"], row["arm"]), name
    assert {e["read"] for e in csv_rows(files["csv/reading_events.csv"])} == set(reads)
    table = csv_rows(files["analysis/analysis_table.csv"])
    assert all((reads[r["read"]]["case"], reads[r["read"]]["arm"]) == (r["case"], r["arm"]) for r in table)


@pytest.mark.django_db
def test_a_run_re_exports_the_same_bytes_and_another_run_draws_other_ids(masked_run,
                                                                         django_capture_on_commit_callbacks):
    sim, run, files = masked_run
    # the zip is cached with the run; built again from the stored snapshot and key, its files are the same bytes
    default_storage.delete(f"trials/{run.trial_id}/analysis/run-{run.number:03d}/"
                           f"export-masked-v{services.EXPORT_LAYOUT}.zip")
    _, data = services.export_run(run=run, by=sim.statistician)
    again = zip_members(data)
    for name, member in files.items():
        if name.startswith(("csv/", "analysis/")) or name in ("results.json", "data_dictionary.csv"):
            assert again[name] == member, name
    other = run_now(sim, django_capture_on_commit_callbacks)
    assert other.id_key and other.id_key != run.id_key
    _, data = services.export_run(run=other, by=sim.statistician)
    first = {(r["case"], r["reader"]): r["read"] for r in csv_rows(files["csv/reads.csv"])}
    second = {(r["case"], r["reader"]): r["read"] for r in csv_rows(zip_members(data)["csv/reads.csv"])}
    assert set(first) == set(second) and first != second


@pytest.mark.django_db
def test_after_unblinding_ids_csv_links_the_surrogates_to_the_platforms_ids(masked_run,
                                                                            django_capture_on_commit_callbacks):
    sim, run, masked_files = masked_run
    assert "ids.csv" not in masked_files
    with django_capture_on_commit_callbacks(execute=True):
        move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    run.refresh_from_db()
    _, data = services.export_run(run=run, by=sim.statistician)
    files = zip_members(data)
    links = {(r["kind"], r["id"]): int(r["database_id"]) for r in csv_rows(files["ids.csv"])}
    reads = {r.pk: r for r in Read.objects.filter(trial=sim.trial).select_related("case", "reader")}
    for row in csv_rows(files["csv/reads.csv"]):
        read = reads[links[("read", row["read"])]]
        assert (read.case.code, read.reader.pseudonym, read.arm) == (row["case"], row["reader"], row["arm"])
    reports = {r.pk: r for r in Report.objects.filter(read__trial=sim.trial)}
    for row in csv_rows(files["csv/reports.csv"]):
        assert reports[links[("report", row["report"])]].read_id == links[("read", row["read"])]
    # the same surrogates as before unblinding
    assert [r["read"] for r in csv_rows(files["csv/reads.csv"])] == [r["read"] for r in
                                                                     csv_rows(masked_files["csv/reads.csv"])]


# --------------------------------------------------------------------------- withheld columns and the dictionary


def _headers(name: str, data: bytes) -> list[str]:
    if name.endswith(".csv"):
        return next(csv.reader(io.StringIO(data.decode("utf-8"))), [])
    import pyreadstat

    with tempfile.NamedTemporaryFile(suffix=name[-4:]) as fh:
        fh.write(data)
        fh.flush()
        _, meta = (pyreadstat.read_sav if name.endswith(".sav") else pyreadstat.read_dta)(fh.name)
    return list(meta.column_names)


@pytest.mark.django_db
def test_no_withheld_column_is_in_any_masked_file_and_the_dictionary_says_why(masked_run):
    _, _, files = masked_run
    withheld = dataset.withheld_columns()
    assert {(f, c) for f, c, _ in withheld} >= {("reports", "draft_kept_share"), ("reports", "draft_edit_distance")}
    assert all(reason.strip() for _, _, reason in withheld)
    names = {c for _, c, _ in withheld}
    # A column is withheld in its entity: a name withheld in one entity and shown in another (the deviations' read
    # and reader, withheld because some deviations exist in one arm only) is checked in its own file; a name that no
    # other entity has (draft_kept_share) in every file, the derived ones too.
    withheld_in = {}
    for entity, column, _ in withheld:
        withheld_in.setdefault(entity, set()).add(column)
    shown_elsewhere = {c.name for e in dataset.ENTITIES for c in e.columns if c.name not in withheld_in.get(e.name, ())}
    everywhere = names - shown_elsewhere

    def leaked(file_name: str, header) -> set:
        entity = file_name.rsplit("/", 1)[-1].split(".")[0]
        return (everywhere | withheld_in.get(entity, set())) & set(header)

    for name, data in files.items():
        if name.endswith((".csv", ".sav", ".dta")) and not name.startswith("data_dictionary"):
            assert not leaked(name, _headers(name, data)), name
    from openpyxl import load_workbook

    (book_name,) = [n for n in files if n.endswith(".xlsx")]
    book = load_workbook(io.BytesIO(files[book_name]), read_only=True)
    for sheet in book.sheetnames:
        if sheet != "data_dictionary":
            header = next(book[sheet].iter_rows(max_row=1, values_only=True), ())
            assert not leaked(sheet, header), sheet
    dictionary = csv_rows(files["data_dictionary.csv"])
    listed = {(d["file"], d["column"]): d["withheld"] for d in dictionary if d["withheld"]}
    assert set(listed) == {(f, c) for f, c, _ in withheld}
    for (f, c), text in listed.items():
        reason = next(r for ff, cc, r in withheld if (ff, cc) == (f, c))
        assert text.startswith("withheld until unblinding") and reason in text
    markdown = files["data_dictionary.md"].decode()
    assert "## Withheld until unblinding" in markdown and all(f"| {c} |" in markdown for c in names)


@pytest.mark.django_db
def test_no_column_of_a_masked_file_is_empty_in_one_arm_only(masked_run):
    """A column with values in one arm and none in the other names the arm by itself."""
    _, _, files = masked_run
    for entity in dataset.ENTITIES:
        if not any(c.arm for c in entity.columns) or entity.name in ("preferences", "allocations"):
            continue
        rows = csv_rows(files[f"csv/{entity.name}.csv"])
        if not rows:
            continue
        for column in rows[0]:
            filled = {r["arm"] for r in rows if r[column] != ""}
            assert filled in (set(), {"X", "Y"}), f"{entity.name}.{column} has values in {filled} only"


def test_surrogates_are_a_fresh_random_order_for_each_key():
    """Over many keys, the lower surrogate of a case is the assisted read half the time, whatever the database ids
    (here: the assisted read always has the lower id). Deterministic: the keys are fixed."""
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=12, n_experts=3, seed=5)
    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    arm_of = {r["read"]: (r["case"], r["arm"]) for r in dataset.records(snapshot, "reads")}
    by_case: dict[str, dict[str, int]] = defaultdict(dict)
    for read, (case, arm) in arm_of.items():
        by_case[case][arm] = read
    assert all(c["assisted"] < c["standard"] for c in by_case.values())   # the pattern to hide
    hits = n = 0
    for i in range(200):
        ids = dataset.surrogate_ids(snapshot, f"key-{i}")["read"]
        assert sorted(ids.values()) == list(range(1, len(arm_of) + 1))
        for c in by_case.values():
            hits += ids[c["assisted"]] < ids[c["standard"]]
            n += 1
    assert binomtest(hits, n, 0.5).pvalue > 0.01, (hits, n)
    assert dataset.surrogate_ids(snapshot, "key-1") == dataset.surrogate_ids(snapshot, "key-1")
    assert dataset.surrogate_ids(snapshot, "key-1") != dataset.surrogate_ids(snapshot, "key-2")
