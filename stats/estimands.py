"""Estimands in the data (no Django): intercurrent events flagged and counted, the plan's strategies applied.

ICH E9(R1) describes an estimand by its population, its variable, the handling of each intercurrent
event and its summary measure; the plan states them per endpoint (stats.plan.ESTIMAND_ENDPOINTS).
This module finds the events the dataset can show today, in a coded view (arms X/Y):

- draft_unavailable (a case): no ready AI draft of the trial model for the case. The data show a
  ready draft through its finding scores (ai_scores), so a case without any is flagged; a trial with
  no AI scores at all cannot tell, and the event is reported as not determinable. It is a property
  of the case, not of a read: flagging the read of the AI-assisted arm would tell the arms apart.
- read_not_submitted (a read): a read routed to a reader and not submitted; its outcomes are missing.
- report_corrected (a read): the read's report has a version after the submitted one.
- wrong_arm (a read): the read's arm is not the one randomization gave it: the reader's allocated arm
  (paired-parallel; in a crossover, period 1 in the allocated arm and period 2 in the other), the
  case's allocated arm (case-randomized). Units without an allocation row are not judged.
- draft_late (a case), from the deviations log (kind draft_not_shown): the case's AI draft was not
  shown to its reader (the trial's draft rule "read without" after a failed or late draft). A property of the case, as
  draft_unavailable: flagging the assisted read would tell the arms apart.
- reader_withdrawn (a read): the read that replaced the open read of a withdrawn reader (a read
  with status "rerouted" in the same case and arm).
- case_withdrawn (a case), from the deviations log: the case was withdrawn after enrolment.
Reads closed by a withdrawal (status rerouted or withdrawn) are not "not submitted": another read
replaced them, or the case left the trial.

Strategies, applied to the rows of one endpoint (`apply`):

- treatment policy: every outcome as observed, in the arm as randomized. A wrong-arm read's rows
  take the arm randomization gave (its scores, its time); a preference vote whose two reports end
  up in one arm cannot compare the arms and is left out (counted). For a read not submitted there
  is no outcome: the mixed models use every outcome observed, which is valid when the missing ones
  are missing at random given the model; the tipping-point analysis (stats.methods.tipping) asks how
  far from that they must be to change the primary's conclusion.
- hypothetical: the outcome had the event not occurred, estimated by leaving the affected outcomes
  out (missing at random given the model): the cases without a draft (both arms, so that the case
  stays comparable), the corrected reads, the wrong-arm reads, and the votes on their reports.

The population "complete_cases" keeps the cases with the endpoint's outcome in both arms after the
strategies; the variable chooses the rows (signed reports only) or the column (wall time). A plan
without estimands (schema 1 and 2) analyses every row as recorded; its events are counted all the same.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import dataset
from .plan import EVENTS_NOT_IN_DATA, INTERCURRENT_EVENTS, POPULATIONS, STRATEGIES, VARIABLES

SCORE_FIELD = {"quality": "score", "radpeer": "radpeer_score"}


@dataclass
class EventFlags:
    """The intercurrent events of one coded view, by unit."""

    reads: dict[int, dict[str, Any]]
    cases_without_draft: set[str] | None          # None: the data cannot tell (no AI scores at all)
    not_submitted: set[int]
    corrected: set[int]
    randomized_arm: dict[int, str]                # read → the arm randomization gave it (where known)
    wrong_arm: set[int] = field(default_factory=set)
    cases_draft_late: set[str] = field(default_factory=set)
    replacements: set[int] = field(default_factory=set)   # reads that replaced a withdrawn reader's
    cases_withdrawn: set[str] = field(default_factory=set)

    def read_flags(self, read_id: int | None, case: str) -> dict[str, int | None]:
        """0/1 per event for a read (None where the data cannot tell)."""
        draft = None if self.cases_without_draft is None else int(case in self.cases_without_draft)
        by_case = {"draft_unavailable": draft, "draft_late": int(case in self.cases_draft_late),
                   "case_withdrawn": int(case in self.cases_withdrawn)}
        if read_id is None:
            return {**by_case, "read_not_submitted": None, "report_corrected": None, "wrong_arm": None,
                    "reader_withdrawn": None}
        return {**by_case, "read_not_submitted": int(read_id in self.not_submitted),
                "report_corrected": int(read_id in self.corrected), "wrong_arm": int(read_id in self.wrong_arm),
                "reader_withdrawn": int(read_id in self.replacements)}


def flag_events(view: Mapping[str, Any], *, design: str) -> EventFlags:
    """Every intercurrent event the coded view can show (module docstring)."""
    reads = {r["read"]: r for r in dataset.view_records(view, "reads")}
    ai = dataset.view_records(view, "ai_scores")
    cases = {c["case"] for c in dataset.view_records(view, "cases")}
    without_draft = None
    if ai:
        with_scores = {r["case"] for r in ai if r["score"] is not None}
        without_draft = cases - with_scores
    closed = ("rerouted", "withdrawn")  # closed by a withdrawal: replaced, or the case left the trial
    not_submitted = {rid for rid, r in reads.items() if r["status"] != "submitted" and r["status"] not in closed}
    rerouted = {(r["case"], r["arm"]) for r in reads.values() if r["status"] == "rerouted"}
    replacements = {rid for rid, r in reads.items() if r["status"] != "rerouted" and (r["case"], r["arm"]) in rerouted}
    deviations = dataset.view_records(view, "deviations")
    draft_late = {d["case"] for d in deviations if d["kind"] == "draft_not_shown" and d.get("case")}
    withdrawn_cases = {d["case"] for d in deviations if d["kind"] == "case_withdrawn" and d.get("case")}
    last_version: dict[int, int] = {}
    for rep in dataset.view_records(view, "reports"):
        last_version[rep["read"]] = max(last_version.get(rep["read"], 0), int(rep["version"] or 1))
    corrected = {rid for rid, v in last_version.items() if v > 1}
    allocated = {(a["unit_type"], a["unit"]): a["arm"] for a in dataset.view_records(view, "allocations")}
    arms = sorted({r["arm"] for r in reads.values()})
    randomized: dict[int, str] = {}
    for rid, r in reads.items():
        if design == "case_randomized":
            arm = allocated.get(("case", r["case"]))
        else:
            arm = allocated.get(("reader", r["reader"]))
            if arm is not None and design == "crossover" and int(r.get("period") or 1) == 2:
                other = [a for a in arms if a != arm]
                arm = other[0] if len(other) == 1 else None
        if arm is not None:
            randomized[rid] = arm
    wrong = {rid for rid, arm in randomized.items() if reads[rid]["arm"] != arm}
    return EventFlags(reads=reads, cases_without_draft=without_draft, not_submitted=not_submitted,
                      corrected=corrected, randomized_arm=randomized, wrong_arm=wrong, cases_draft_late=draft_late,
                      replacements=replacements, cases_withdrawn=withdrawn_cases)


def count_events(flags: EventFlags, *, arms: tuple[str, str]) -> dict[str, Any]:
    """How often each event occurred: reads per arm (cases for the case-level event), and the events not in the data."""
    out: dict[str, Any] = {}
    by_read = {"read_not_submitted": flags.not_submitted, "report_corrected": flags.corrected,
               "wrong_arm": flags.wrong_arm, "reader_withdrawn": flags.replacements}
    by_case = {"draft_late": flags.cases_draft_late, "case_withdrawn": flags.cases_withdrawn}
    for event, spec in INTERCURRENT_EVENTS.items():
        entry: dict[str, Any] = {"label": spec["label"], "strategies": list(spec["strategies"])}
        if event in by_case:
            affected = [r for r in flags.reads.values() if r["case"] in by_case[event]]
            entry.update(determinable=True, unit="case", cases=len(by_case[event]),
                         reads={a: sum(r["arm"] == a for r in affected) for a in arms})
        elif event == "draft_unavailable":
            if flags.cases_without_draft is None:
                entry.update(determinable=False, cases=None, reads=None,
                             note="the data hold no AI scores at all: a missing draft cannot be told from a model "
                                  "without finding scores")
            else:
                affected = [r for r in flags.reads.values() if r["case"] in flags.cases_without_draft]
                entry.update(determinable=True, unit="case", cases=len(flags.cases_without_draft),
                             reads={a: sum(r["arm"] == a for r in affected) for a in arms})
        else:
            ids = by_read[event]
            entry.update(determinable=True, unit="read", n=len(ids),
                         reads={a: sum(flags.reads[i]["arm"] == a for i in ids) for a in arms},
                         cases=len({flags.reads[i]["case"] for i in ids}))
            if event == "wrong_arm":
                entry["judged_reads"] = len(flags.randomized_arm)
        out[event] = entry
    return {"events": out, "not_in_data": dict(EVENTS_NOT_IN_DATA)}


# ------------------------------------------------------------------------------------------ strategies


def _replace_tables(view: Mapping[str, Any], tables: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    new = dict(view["tables"])
    for entity, rows in tables.items():
        names = view["columns"][entity]
        new[entity] = [[row[n] for n in names] for row in rows]
    return {**view, "tables": new}


def _outcome_rows(endpoint: str, tables: Mapping[str, list[dict]], time_field: str) -> list[dict]:
    if endpoint in SCORE_FIELD:
        return [q for q in tables["quality_scores"] if q[SCORE_FIELD[endpoint]] is not None]
    if endpoint == "reading_time":
        return [r for r in tables["reads"] if r["status"] == "submitted" and (r.get(time_field) or 0) > 0]
    return tables["preferences"]


def apply(view: Mapping[str, Any], *, endpoint: str, estimand: Mapping[str, Any] | None, flags: EventFlags,
          arms: tuple[str, str]) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """(the view an endpoint is analysed on, what was done): the plan's strategies, variable and population.

    The view is returned unchanged (the same object) when nothing applies, so that a plan whose
    estimands change nothing gives exactly the analysis of every row as recorded.
    """
    time_field = (estimand or {}).get("variable", "active_seconds") if endpoint == "reading_time" else "active_seconds"
    tables = {e: dataset.view_records(view, e) for e in ("quality_scores", "reads", "preferences")}
    before = len(_outcome_rows(endpoint, tables, time_field))
    summary: dict[str, Any] = {"rows_before": before, "applied": [], "notes": []}
    if estimand is None:
        summary.update(specified=False, rows_after=before,
                       notes=["the plan states no estimands (schema 1 or 2): every row is analysed as recorded"])
        return view, summary
    summary.update(specified=True, population=estimand["population"],
                   population_label=POPULATIONS[estimand["population"]], variable=estimand["variable"],
                   variable_label=VARIABLES[endpoint][estimand["variable"]],
                   summary_measure=estimand.get("summary_measure", ""),
                   strategies={e: {"strategy": s, "label": STRATEGIES[s]}
                               for e, s in estimand["intercurrent_events"].items()})
    changed = False
    read_of = {(r["case"], r["reader"], r["arm"]): r["read"] for r in flags.reads.values()}

    def vote_reads(v: Mapping[str, Any]) -> list[int | None]:
        other = [a for a in arms if a != v["left_arm"]]
        right_arm = other[0] if len(other) == 1 else None
        return [read_of.get((v["case"], v.get("left_reader"), v["left_arm"])),
                read_of.get((v["case"], v.get("right_reader"), right_arm))]

    def drop(event: str, strategy: str, *, reads: set[int] = frozenset(), cases: set[str] = frozenset()) -> None:
        nonlocal changed
        n0 = {e: len(rows) for e, rows in tables.items()}
        tables["quality_scores"] = [q for q in tables["quality_scores"]
                                    if q["read"] not in reads and q["case"] not in cases]
        tables["reads"] = [r for r in tables["reads"] if r["read"] not in reads and r["case"] not in cases]
        kept_votes = []
        for v in tables["preferences"]:
            if v["case"] in cases:
                continue
            pair = vote_reads(v)
            if reads and (any(p in reads for p in pair)
                          or (None in pair and any(flags.reads[i]["case"] == v["case"] for i in reads))):
                continue
            kept_votes.append(v)
        tables["preferences"] = kept_votes
        left = {e: n0[e] - len(rows) for e, rows in tables.items()}
        changed = changed or any(left.values())
        summary["applied"].append({"event": event, "strategy": strategy, "rows_left_out": left})

    events = estimand["intercurrent_events"]
    if events.get("draft_unavailable") == "hypothetical":
        if flags.cases_without_draft is None:
            summary["notes"].append("draft_unavailable: not determinable in these data; nothing left out")
        else:
            drop("draft_unavailable", "hypothetical", cases=set(flags.cases_without_draft))
    if events.get("report_corrected") == "hypothetical":
        drop("report_corrected", "hypothetical", reads=set(flags.corrected))
    if events.get("draft_late") == "hypothetical":
        drop("draft_late", "hypothetical", cases=set(flags.cases_draft_late))
    if events.get("reader_withdrawn") == "hypothetical":
        drop("reader_withdrawn", "hypothetical", reads=set(flags.replacements))
    if events.get("case_withdrawn") == "hypothetical":
        drop("case_withdrawn", "hypothetical", cases=set(flags.cases_withdrawn))
    if events.get("wrong_arm") == "hypothetical":
        drop("wrong_arm", "hypothetical", reads=set(flags.wrong_arm))
    elif flags.wrong_arm:   # treatment policy: the arm as randomized
        relabelled = Counter()
        for entity in ("quality_scores", "reads"):
            for row in tables[entity]:
                if row["read"] in flags.wrong_arm:
                    row["arm"] = flags.randomized_arm[row["read"]]
                    relabelled[entity] += 1
        kept_votes, dropped = [], 0
        for v in tables["preferences"]:
            pair = vote_reads(v)
            if not any(p in flags.wrong_arm for p in pair):
                kept_votes.append(v)
                continue
            if None in pair:
                dropped += 1
                continue
            left_new, right_new = (flags.randomized_arm.get(p, flags.reads[p]["arm"]) for p in pair)
            if left_new == right_new:
                dropped += 1
                continue
            old_left = v["left_arm"]
            v["preferred"] = (left_new if v["preferred"] == old_left else
                              right_new if v["preferred"] in arms else v["preferred"])
            v["left_arm"] = left_new
            relabelled["preferences"] += 1
            kept_votes.append(v)
        tables["preferences"] = kept_votes
        changed = True
        summary["applied"].append({"event": "wrong_arm", "strategy": "treatment_policy",
                                   "rows_relabelled": dict(relabelled), "rows_left_out": {"preferences": dropped},
                                   "note": "rows of a read in the wrong arm are analysed in the arm randomization "
                                           "gave; a vote whose two reports fall in one arm is left out"})
    if estimand["variable"] == "signed_report":
        signed = {(r["read"], r["version"]) for r in dataset.view_records(view, "reports") if r["signed"] == 1}
        n0 = len(tables["quality_scores"])
        tables["quality_scores"] = [q for q in tables["quality_scores"] if (q["read"], q["report_version"]) in signed]
        changed = changed or len(tables["quality_scores"]) != n0
        summary["applied"].append({"event": "variable", "strategy": "signed_report",
                                   "rows_left_out": {"quality_scores": n0 - len(tables["quality_scores"])}})
    if estimand["population"] == "complete_cases" and endpoint != "preference":
        rows = _outcome_rows(endpoint, tables, time_field)
        arms_of: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            arms_of[row["case"]].add(row["arm"])
        paired = any(len(a) == 2 for a in arms_of.values())
        if paired:
            incomplete = {c for c, a in arms_of.items() if len(a) < 2}
            entity = "reads" if endpoint == "reading_time" else "quality_scores"
            n0 = len(tables[entity])
            tables[entity] = [r for r in tables[entity] if r["case"] not in incomplete]
            changed = changed or len(tables[entity]) != n0
            summary["applied"].append({"event": "population", "strategy": "complete_cases",
                                       "rows_left_out": {entity: n0 - len(tables[entity])},
                                       "cases_left_out": len(incomplete)})
        else:
            summary["notes"].append("complete_cases: no case has the outcome in both arms (a case-randomized "
                                    "design): the cases with the outcome are analysed")
    elif estimand["population"] == "complete_cases":
        summary["notes"].append("complete_cases: a vote needs both reports of a case already")
    summary["rows_after"] = len(_outcome_rows(endpoint, tables, time_field))
    if not changed:
        return view, summary
    return _replace_tables(view, tables), summary


# ------------------------------------------------------------------------------- the analysis-ready table


ANALYSIS_TABLE = "analysis_table"
# (name, type, description, unit)
ANALYSIS_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("case", "string", "Case code.", ""),
    ("site", "string", "Site of the case (the randomization stratum).", ""),
    ("arm", "string", "Arm of the read (the arm column of the other files: X/Y before unblinding).", ""),
    ("randomized_arm", "string", "The arm randomization gave this read (empty where no allocation says).", ""),
    ("reader", "string", "Reader pseudonym (empty: no read was routed in this arm).", ""),
    ("read", "integer", "Read id (see reads; empty: no read was routed).", ""),
    ("period", "integer", "Crossover period of the read; 1 otherwise.", ""),
    ("read_status", "string", "assigned, in_progress, submitted, or not_routed.", ""),
    ("active_seconds", "number", "Active reading time of the read.", "s"),
    ("wall_seconds", "number", "Wall time from opening to submission.", "s"),
    ("report_version", "integer", "Latest version of the read's report (1 = as submitted).", ""),
    ("signed", "boolean", "1 if that version is signed off by a senior.", ""),
    ("quality_n", "integer", "Number of expert quality scores of the report.", ""),
    ("quality_mean", "number", "Mean of the experts' quality scores (Likert 1–5).", "points"),
    ("radpeer_n", "integer", "Number of expert RADPEER scores of the report.", ""),
    ("radpeer_mean", "number", "Mean of the experts' RADPEER-based scores (1–5, higher is better).", "points"),
    ("ie_draft_unavailable", "boolean", "Intercurrent event: no ready AI draft of the trial model for the case "
     "(a property of the case, the same in both arms; empty: the data cannot tell).", ""),
    ("ie_read_not_submitted", "boolean", "Intercurrent event: the read was routed and not submitted.", ""),
    ("ie_report_corrected", "boolean", "Intercurrent event: the report has a version after the submitted one.", ""),
    ("ie_wrong_arm", "boolean", "Intercurrent event: the read's arm is not the one randomization gave it.", ""),
    ("ie_draft_late", "boolean", "Intercurrent event: the case's AI draft was not shown to its reader (the "
     "deviations log; a property of the case, the same in both arms).", ""),
    ("ie_reader_withdrawn", "boolean", "Intercurrent event: this read replaced the open read of a withdrawn reader.",
     ""),
    ("ie_case_withdrawn", "boolean", "Intercurrent event: the case was withdrawn after enrolment.", ""),
    ("in_quality", "boolean", "1 if this report's quality scores enter the quality analysis under the plan's "
     "estimand (population, variable, strategies).", ""),
    ("in_radpeer", "boolean", "1 if its RADPEER scores enter the RADPEER analysis under the plan's estimand.", ""),
    ("in_reading_time", "boolean", "1 if the read's time enters the reading-time analysis under the plan's estimand.",
     ""),
)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def analysis_table(view: Mapping[str, Any], *, plan: Mapping[str, Any], design: str) -> tuple[list[str],
                                                                                              list[list[Any]]]:
    """One row per report, i.e. per case × arm (× reader in a crossover), with the expert means, the reader, the
    site, the intercurrent-event flags and whether the row enters each analysis under the plan's estimands.

    `view` is any relabelled view of the snapshot (masked, coded or unmasked): the arms are its own.
    In a paired design an arm of an enrolled case with no read routed in it has a row of its own
    (read_status not_routed). The rows are sorted by case, arm and read.
    """
    flags = flag_events(view, design=design)
    cases = dataset.view_records(view, "cases")
    site_of = {c["case"]: c["site"] for c in cases}
    arms = tuple(sorted({r["arm"] for r in flags.reads.values()}))
    scores: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for q in dataset.view_records(view, "quality_scores"):
        for name, col in (("quality", "score"), ("radpeer", "radpeer_score")):
            if q[col] is not None:
                scores[q["read"]][name].append(float(q[col]))
    reports: dict[int, dict[str, Any]] = {}
    for rep in dataset.view_records(view, "reports"):
        if rep["read"] not in reports or int(rep["version"]) > int(reports[rep["read"]]["version"]):
            reports[rep["read"]] = rep
    estimands = plan.get("estimands")
    included: dict[str, set[int]] = {}
    for endpoint, col in (("quality", "score"), ("radpeer", "radpeer_score"), ("reading_time", None)):
        used, _ = apply(view, endpoint=endpoint, estimand=(estimands or {}).get(endpoint), flags=flags,
                        arms=arms if len(arms) == 2 else ("X", "Y"))
        if col is not None:
            included[endpoint] = {q["read"] for q in dataset.view_records(used, "quality_scores") if q[col] is not None}
        else:
            field_ = (estimands or {}).get("reading_time", {}).get("variable", "active_seconds")
            included[endpoint] = {r["read"] for r in dataset.view_records(used, "reads")
                                  if r["status"] == "submitted" and (r.get(field_) or 0) > 0}
    rows = []
    for rid, r in flags.reads.items():
        rep = reports.get(rid, {})
        s = scores.get(rid, {})
        ie = flags.read_flags(rid, r["case"])
        rows.append([r["case"], site_of.get(r["case"]), r["arm"], flags.randomized_arm.get(rid), r["reader"], rid,
                     r.get("period"), r["status"], r.get("active_seconds"), r.get("wall_seconds"),
                     rep.get("version"), rep.get("signed"), len(s.get("quality", [])), _mean(s.get("quality", [])),
                     len(s.get("radpeer", [])), _mean(s.get("radpeer", [])), ie["draft_unavailable"],
                     ie["read_not_submitted"], ie["report_corrected"], ie["wrong_arm"], ie["draft_late"],
                     ie["reader_withdrawn"], ie["case_withdrawn"],
                     int(rid in included["quality"]), int(rid in included["radpeer"]),
                     int(rid in included["reading_time"])])
    if design != "case_randomized" and len(arms) == 2:
        routed = {(r["case"], r["arm"]) for r in flags.reads.values()}
        for c in cases:
            for arm in arms:
                if (c["case"], arm) not in routed:
                    ie = flags.read_flags(None, c["case"])
                    rows.append([c["case"], c["site"], arm, None, None, None, None, "not_routed", None, None, None,
                                 None, 0, None, 0, None, ie["draft_unavailable"], None, None, None,
                                 ie["draft_late"], None, ie["case_withdrawn"], 0, 0, 0])
    rows.sort(key=lambda row: (row[0], row[2], -1 if row[5] is None else row[5]))
    return [c[0] for c in ANALYSIS_COLUMNS], rows


def analysis_table_dictionary() -> list[dict[str, str]]:
    """The analysis table's dictionary, in the format of the dataset's (stats.dataset.dictionary_rows)."""
    return [{"file": ANALYSIS_TABLE, "column": name, "type": kind, "unit": unit,
             "values": "0, 1" if kind == "boolean" else "", "description": text,
             "file_description": "One row per report (case × arm; × reader in a crossover): expert means, "
                                 "intercurrent-event flags and the estimand populations of the run's plan.",
             "key": "yes" if name in ("case", "arm", "read") else ""}
            for name, kind, text, unit in ANALYSIS_COLUMNS]
