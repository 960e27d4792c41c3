"""The analysis dataset as data (no Django): long tables per entity, their dictionary, the snapshot, its hash, masking.

Every analysis run freezes the rows it uses into a snapshot: a canonical JSON document (sorted
keys, no whitespace, UTF-8) of the tables below, each row a list in the column order of the
dictionary, the rows sorted by the entity's key. Its SHA-256 is the dataset hash: the same data
give the same hash, whatever the order the database returned them in.

The snapshot holds the real arm names and never a name, e-mail or accession number (people are
pseudonyms: R01 readers, E01 experts). Before unblinding, what anyone sees of it is masked: the
arms become "X" and "Y" by the run's random mapping, and the columns that exist in one arm only
(how much of the AI draft a report kept) are withheld, because they would reveal the mapping.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from scoring import radpeer as radpeer_scale

from .plan import canonical_json

FORMAT = 2   # 2: preferences gained left_reader and right_reader (the two reports' readers; left_reader in the key)
MASKED_ARMS = ("X", "Y")


@dataclass(frozen=True)
class Column:
    name: str
    type: str            # integer, number, string, text, datetime, boolean (0/1)
    description: str
    unit: str = ""
    values: str = ""     # allowed values, in words
    arm: bool = False    # holds an arm name: masked to X/Y before unblinding
    withheld: bool = False  # exists in one arm only: left out before unblinding


@dataclass(frozen=True)
class Entity:
    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


ARM_VALUES = "{arms}"
# What an arm column holds: the masked codes before unblinding, the real names after (see arms.csv then).
ARMS_MASKED = "X or Y: masked arm codes; which arm is which is revealed at unblinding"
ARMS_UNMASKED = "assisted (AI-assisted) or standard (standard care)"

ENTITIES: tuple[Entity, ...] = (
    Entity("cases", "One row per enrolled case.", ("case",), (
        Column("case", "string", "Case code (pseudonymous), e.g. C0007."),
        Column("site", "string", "Code of the site that enrolled the case."),
        Column("enrolled_at", "datetime", "When the case was enrolled (UTC, ISO 8601)."),
        Column("view_position", "string", "DICOM view position of the radiograph (PA, AP, …), if recorded."),
    )),
    Entity("allocations", "One row per randomized unit (a reader, or a case in case-randomized trials).",
           ("stratum", "position"), (
        Column("unit_type", "string", "What was randomized.", values="reader or case"),
        Column("unit", "string", "Reader pseudonym or case code."),
        Column("stratum", "string", "Randomization stratum (the site)."),
        Column("position", "integer", "0-based position in the stratum's allocation sequence."),
        Column("block", "integer", "Permuted block number within the stratum."),
        Column("block_size", "integer", "Size of that block."),
        Column("arm", "string", "Allocated arm.", values=ARM_VALUES, arm=True),
        Column("allocated_at", "datetime", "When the allocation was made (UTC)."),
    )),
    Entity("reads", "One row per read: a case on a reader's worklist in one arm.", ("read",), (
        Column("read", "integer", "Read id."),
        Column("case", "string", "Case code."),
        Column("reader", "string", "Reader pseudonym."),
        Column("reader_site", "string", "Site of the reader."),
        Column("arm", "string", "Arm of the read.", values=ARM_VALUES, arm=True),
        Column("period", "integer", "Crossover: 1st or 2nd read of the case by this reader; 1 otherwise."),
        Column("status", "string", "State of the read.", values="assigned, in_progress, submitted"),
        Column("opened_at", "datetime", "First opening of the case (server clock, UTC)."),
        Column("submitted_at", "datetime", "Submission of the report (server clock, UTC)."),
        Column("wall_seconds", "number", "First opening to submission.", unit="s"),
        Column("active_seconds", "number", "Time the case was on screen and the reader active, from the "
               "server-stamped event log (idle, hidden and dead-tab time excluded).", unit="s"),
    )),
    Entity("reading_events", "One row per event of the reading screen, stamped by the server.", ("read", "seq"), (
        Column("read", "integer", "Read id (see reads)."),
        Column("seq", "integer", "1-based order of the event within its read."),
        Column("kind", "string", "What happened.", values="opened, image_shown, first_edit, hidden, visible, idle, "
               "resumed, heartbeat, autosaved, submitted"),
        Column("server_time", "datetime", "Server clock (UTC)."),
        Column("tab", "string", "Browser tab id (random, per tab)."),
        Column("clock_skew_seconds", "number", "Client clock minus server clock, when the client sent its time.",
               unit="s"),
    )),
    Entity("reports", "One row per version of a submitted report (a correction is a new version).", ("report",), (
        Column("report", "integer", "Report id."),
        Column("read", "integer", "Read id."),
        Column("case", "string", "Case code."),
        Column("reader", "string", "Reader pseudonym."),
        Column("arm", "string", "Arm of the read.", values=ARM_VALUES, arm=True),
        Column("version", "integer", "1 = as submitted; higher = corrections."),
        Column("final", "boolean", "1 for the latest version of the read's report (the one analysed).", values="0, 1"),
        Column("created_at", "datetime", "When this version was written (UTC)."),
        Column("signed", "boolean", "Signed off by a senior.", values="0, 1"),
        Column("signed_at", "datetime", "When it was signed (UTC)."),
        Column("findings", "text", "FINDINGS section."),
        Column("impression", "text", "IMPRESSION section."),
        Column("reason", "text", "Why this version replaced the previous one."),
        Column("draft_kept_share", "number", "Share of the AI draft's characters kept in the report (AI-assisted "
               "reads only). Withheld before unblinding: it exists in one arm only.", withheld=True),
        Column("draft_edit_distance", "number", "Normalized Levenshtein distance from the AI draft, 0 = unchanged "
               "(AI-assisted reads only). Withheld before unblinding.", withheld=True),
    )),
    Entity("reader_calls", "One row per read and finding: the reader's call in the final report.",
           ("read", "finding"), (
        Column("read", "integer", "Read id."),
        Column("case", "string", "Case code."),
        Column("reader", "string", "Reader pseudonym."),
        Column("arm", "string", "Arm of the read.", values=ARM_VALUES, arm=True),
        Column("finding", "string", "Finding name (the trial's list)."),
        Column("call", "boolean", "1 if the reader marked the finding present.", values="0, 1"),
    )),
    Entity("quality_scores", "One row per expert score of one report, given blinded (latest answer of the expert).",
           ("case", "arm", "reader", "expert"), (
        Column("case", "string", "Case code."),
        Column("arm", "string", "Arm of the scored report.", values=ARM_VALUES, arm=True),
        Column("reader", "string", "Pseudonym of the report's reader."),
        Column("read", "integer", "Read id of the scored report (see reads)."),
        Column("report_version", "integer", "Version of the report the expert saw."),
        Column("expert", "string", "Expert pseudonym."),
        Column("score", "integer", "Overall report quality, Likert 1 (very poor) to 5 (excellent).", values="1–5"),
        Column("radpeer", "string", "RADPEER score as given.", values="1, 2a, 2b, 3a, 3b"),
        Column("radpeer_score", "integer", "RADPEER as an ordinal agreement score, higher is better: "
               "1 → 5, 2a → 4, 2b → 3, 3a → 2, 3b → 1.", values="1–5"),
        Column("seconds", "number", "Time from opening the item to the expert's first answer.", unit="s"),
    )),
    Entity("preferences", "One row per expert vote between the two reports of a case, shown side by side "
           "(in a crossover, one pair per case and reader).",
           ("case", "expert", "left_reader"), (
        Column("case", "string", "Case code."),
        Column("expert", "string", "Expert pseudonym."),
        Column("preferred", "string", "The arm whose report the expert preferred, or none.",
               values=ARM_VALUES + "; none", arm=True),
        Column("left_arm", "string", "The arm whose report was shown on the left (sides randomized).",
               values=ARM_VALUES, arm=True),
        Column("left_reader", "string", "Pseudonym of the reader who wrote the report shown on the left."),
        Column("right_reader", "string", "Pseudonym of the reader who wrote the report shown on the right."),
        Column("seconds", "number", "Time the expert spent on the pair.", unit="s"),
    )),
    Entity("reference_standard", "One row per case and finding: the reference standard.", ("case", "finding"), (
        Column("case", "string", "Case code."),
        Column("finding", "string", "Finding name."),
        Column("truth", "boolean", "1 if the finding is present; empty while undecided (pending).", values="0, 1"),
        Column("source", "string", "How the reference standard was set (e.g. majority, adjudicated, pending)."),
    )),
    Entity("ai_scores", "One row per case and finding: the AI model's score for the finding.", ("case", "finding"), (
        Column("case", "string", "Case code."),
        Column("finding", "string", "Finding name."),
        Column("score", "number", "Model score, higher = more likely present.", values="0–1"),
        Column("model", "string", "Model version that produced the draft."),
    )),
)
ENTITY = {e.name: e for e in ENTITIES}




def _sort_key(value: Any) -> tuple:
    # None first, then numbers, then text: a total order over the mixed values of one column.
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, str(value))


def normalise(rows: Iterable[Mapping[str, Any]], entity: Entity) -> list[list[Any]]:
    """Rows as lists in the dictionary's column order, sorted by the entity's key (then all columns)."""
    names = entity.names
    getter = itemgetter(*names)
    try:
        out = [list(getter(row)) for row in rows]
    except KeyError as exc:
        raise ValueError(f"{entity.name}: a row lacks the column {exc}") from None
    key_idx = [names.index(k) for k in entity.key]
    key = itemgetter(*key_idx) if len(key_idx) > 1 else (lambda r, i=key_idx[0]: (r[i],))
    try:  # keys are never empty and of one type per column: plain tuples sort them
        out.sort(key=key)
    except TypeError:
        out.sort(key=lambda r: tuple(_sort_key(r[i]) for i in key_idx))
    if len({key(r) for r in out}) != len(out):
        # duplicate keys: order the whole rows so that the result does not depend on the input order
        out.sort(key=lambda r: tuple(_sort_key(r[i]) for i in key_idx) + tuple(_sort_key(v) for v in r))
    return out


def _pick(row: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return default


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


def from_scoring(rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The scoring app's analysis rows (scoring.selectors.analysis_rows) as our three entities.

    THE SEAM with the scoring app: the only place that knows its row format ("quality", "preference",
    "reference_standard" lists of plain dicts). Quality: case, arm, reader, read, report_version,
    expert, overall, radpeer, seconds. Preference: case, expert, preferred_arm (None = no
    preference), left_arm, reader_assisted and reader_standard (the readers of the two reports, read
    here into the arm-neutral left_reader/right_reader by left_arm), seconds. Reference standard:
    case, finding, present (None = pending), method.
    """
    quality = []
    for q in rows.get("quality", ()):
        radpeer = q.get("radpeer")
        radpeer = None if radpeer in (None, "") else str(radpeer)
        quality.append({
            "case": q["case"], "arm": q["arm"], "reader": q["reader"], "read": q.get("read"),
            "report_version": q.get("report_version"), "expert": q["expert"],
            "score": None if _pick(q, "overall", "score") is None else int(_pick(q, "overall", "score")),
            "radpeer": radpeer, "radpeer_score": radpeer_scale.SCORE.get(radpeer) if radpeer else None,
            "seconds": _seconds(q.get("seconds")),
        })
    preferences = []
    for p in rows.get("preference", rows.get("preferences", ())):
        preferred = _pick(p, "preferred_arm", "preferred")
        left_arm = p.get("left_arm")
        # scoring names the readers by arm (reader_<arm>): the reader of the left report is reader_<left_arm>
        readers = {k[len("reader_"):]: v for k, v in p.items() if k.startswith("reader_") and v}
        left = readers.pop(left_arm, None) if left_arm is not None else None
        right = next(iter(readers.values())) if len(readers) == 1 else None
        preferences.append({"case": p["case"], "expert": p["expert"], "preferred": preferred or "none",
                            "left_arm": left_arm,
                            "left_reader": p.get("left_reader", left),
                            "right_reader": p.get("right_reader", right),
                            "seconds": _seconds(p.get("seconds"))})
    reference = []
    for r in rows.get("reference_standard", ()):
        present = _pick(r, "present", "truth")
        reference.append({"case": r["case"], "finding": r["finding"],
                          "truth": None if present is None else int(bool(present)),
                          "source": str(_pick(r, "method", "source", default=""))})
    return {"quality_scores": quality, "preferences": preferences, "reference_standard": reference}


def build_snapshot(*, trial: Mapping[str, Any], rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
    """The snapshot document: trial facts and every entity's rows (missing entities are empty tables)."""
    return {
        "format": FORMAT,
        "trial": dict(trial),
        "tables": {e.name: normalise(rows.get(e.name, ()), e) for e in ENTITIES},
    }


def snapshot_bytes(snapshot: Mapping[str, Any]) -> bytes:
    return canonical_json(snapshot)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def records(snapshot: Mapping[str, Any], entity: str) -> list[dict[str, Any]]:
    """An entity's rows as dicts (column name → value)."""
    names = ENTITY[entity].names
    return [dict(zip(names, row)) for row in snapshot["tables"].get(entity, [])]


def columns(snapshot: Mapping[str, Any], entity: str, *, masked: bool = False) -> list[str]:
    return [c.name for c in ENTITY[entity].columns if not (masked and c.withheld)]


def arm_mapping_inverse(mapping: Mapping[str, str]) -> dict[str, str]:
    """{"X": "assisted", "Y": "standard"} → {"assisted": "X", "standard": "Y"}."""
    inverse = {real: code for code, real in mapping.items()}
    if set(mapping) != set(MASKED_ARMS) or len(inverse) != 2:
        raise ValueError("an arm mapping names each of X and Y once")
    return inverse


def relabel(snapshot: Mapping[str, Any], *, label: Callable[[Any], Any], drop_withheld: bool) -> dict[str, Any]:
    """A copy of the snapshot with every arm value passed through `label` and, optionally, withheld columns dropped."""
    tables = {}
    for entity in ENTITIES:
        keep = [i for i, c in enumerate(entity.columns) if not (drop_withheld and c.withheld)]
        arm_idx = {i for i, c in enumerate(entity.columns) if c.arm}
        tables[entity.name] = [
            [label(row[i]) if i in arm_idx else row[i] for i in keep]
            for row in snapshot["tables"].get(entity.name, [])
        ]
    return {**snapshot, "tables": tables, "columns": {
        e.name: [c.name for c in e.columns if not (drop_withheld and c.withheld)] for e in ENTITIES}}


def masked(snapshot: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """Arms as X/Y by `mapping` (code → real arm), one-arm columns withheld: what anyone sees before unblinding."""
    inverse = arm_mapping_inverse(mapping)
    return relabel(snapshot, label=lambda v: inverse.get(v, v), drop_withheld=True)


def coded(snapshot: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """Arms as X/Y but every column kept: what the analysis computes on (it never needs the real names)."""
    inverse = arm_mapping_inverse(mapping)
    return relabel(snapshot, label=lambda v: inverse.get(v, v), drop_withheld=False)


def unmasked(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return relabel(snapshot, label=lambda v: v, drop_withheld=False)


def table(view: Mapping[str, Any], entity: str) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of an entity in a relabelled view."""
    return view["columns"][entity], view["tables"][entity]


def view_records(view: Mapping[str, Any], entity: str) -> list[dict[str, Any]]:
    names, rows = table(view, entity)
    return [dict(zip(names, row)) for row in rows]


def dictionary_rows(*, masked_view: bool) -> list[dict[str, str]]:
    """The data dictionary: one row per entity and column, in file order."""
    out = []
    for entity in ENTITIES:
        for c in entity.columns:
            if masked_view and c.withheld:
                continue
            values = c.values.replace("{arms}", ARMS_MASKED if masked_view else ARMS_UNMASKED)
            out.append({"file": entity.name, "column": c.name, "type": c.type, "unit": c.unit,
                        "values": values, "description": c.description,
                        "file_description": entity.description, "key": "yes" if c.name in entity.key else ""})
    return out
