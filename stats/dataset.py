"""The analysis dataset as data (no Django): long tables per entity, their dictionary, the snapshot, its hash, masking.

Every analysis run freezes the rows it uses into a snapshot: a canonical JSON document (sorted
keys, no whitespace, UTF-8) of the tables below, each row a list in the column order of the
dictionary, the rows sorted by the entity's key. Its SHA-256 is the dataset hash: the same data
give the same hash, whatever the order the database returned them in.

The snapshot holds the real arm names and the platform's database ids of reads and reports, and
never a name, e-mail or accession number (people are pseudonyms: R01 readers, E01 experts). What
anyone sees of it, and what the analysis computes on, is a view of it made for one analysis run:

- ids: every read id and report id is replaced by a surrogate, the reads (and the reports) numbered
  1 to n in an order drawn from the run's secret random key (`surrogate_ids`). Database ids follow
  the order the reads were created in, which is not random across the arms (a case's assisted read
  was created first); the surrogates are, and they are the same in every table of the view.
- arms: "X" and "Y" by the run's random mapping (the real names only after unblinding);
- rows: sorted again by each entity's key as the view shows it, so that no row order carries the
  database's order or the real arm names' alphabetical order;
- withheld columns: before unblinding, the columns that exist in one arm only or reveal the arm by
  themselves (how much of the AI draft a report kept) are left out, each with its reason in the
  data dictionary.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from scoring import radpeer as radpeer_scale

from .plan import canonical_json

FORMAT = 4   # 2: preferences gained left_reader and right_reader (the two reports' readers; left_reader in the key)
#             3: preferences gained guess (the expert's answer to "which report was written with AI assistance?");
#                older snapshots read with it empty
#             4: the screening log and the deviations (intercurrent events) as entities; older snapshots: empty
MASKED_ARMS = ("X", "Y")


@dataclass(frozen=True)
class Column:
    name: str
    type: str            # integer, number, string, text, datetime, boolean (0/1)
    description: str
    unit: str = ""
    values: str = ""     # allowed values, in words
    arm: bool = False    # holds an arm name: masked to X/Y before unblinding
    withheld: str = ""   # why it is left out before unblinding (it exists in one arm only, or reveals the arm)
    id_of: str = ""      # holds a read or report id: replaced by the run's surrogate ("read" or "report")


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

# Why a column is withheld before unblinding (Column.withheld): said in the masked data dictionary.
ONE_ARM_ONLY = ("it exists in one arm only, the arm whose readers saw an AI draft (empty in the other): which "
                "code's reports have a value would tell which arm is X")
ARM_OF_READ = ("some deviations exist in one arm only (a read opened without its AI draft): the read, its "
               "reader or the words naming them would tell which arm is X")
# What an id column holds in every view (Column.id_of): a surrogate, never the platform's database id.
SURROGATE_NOTE = ("A surrogate drawn for this analysis run: the {kind}s are numbered 1 to n in a secret random "
                  "order, the same number in every file; not the platform's database id{after}.")
SURROGATE_AFTER = " (ids.csv links the two after unblinding)"

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
        Column("read", "integer", "Read id.", id_of="read"),
        Column("case", "string", "Case code."),
        Column("reader", "string", "Reader pseudonym."),
        Column("reader_site", "string", "Site of the reader."),
        Column("arm", "string", "Arm of the read.", values=ARM_VALUES, arm=True),
        Column("period", "integer", "Crossover: 1st or 2nd read of the case by this reader; 1 otherwise."),
        Column("status", "string", "State of the read.",
               values="assigned, in_progress, submitted, rerouted (its reader withdrawn: another read replaced it), "
                      "withdrawn (its case withdrawn: read no further)"),
        Column("opened_at", "datetime", "First opening of the case (server clock, UTC)."),
        Column("submitted_at", "datetime", "Submission of the report (server clock, UTC)."),
        Column("wall_seconds", "number", "First opening to submission.", unit="s"),
        Column("active_seconds", "number", "Time the case was on screen and the reader active, from the "
               "server-stamped event log (idle, hidden and dead-tab time excluded).", unit="s"),
    )),
    Entity("reading_events", "One row per event of the reading screen, stamped by the server.", ("read", "seq"), (
        Column("read", "integer", "Read id (see reads).", id_of="read"),
        Column("seq", "integer", "1-based order of the event within its read."),
        Column("kind", "string", "What happened.", values="opened, image_shown, first_edit, hidden, visible, idle, "
               "resumed, heartbeat, autosaved, submitted"),
        Column("server_time", "datetime", "Server clock (UTC)."),
        Column("tab", "string", "Browser tab id (random, per tab)."),
        Column("clock_skew_seconds", "number", "Client clock minus server clock, when the client sent its time.",
               unit="s"),
    )),
    Entity("reports", "One row per version of a submitted report (a correction is a new version).", ("report",), (
        Column("report", "integer", "Report id.", id_of="report"),
        Column("read", "integer", "Read id (see reads).", id_of="read"),
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
        Column("draft_kept_share", "number", "Share of the AI draft's characters kept in the report (reads with "
               "an AI draft only).", withheld=ONE_ARM_ONLY),
        Column("draft_edit_distance", "number", "Normalized Levenshtein distance from the AI draft, 0 = unchanged "
               "(reads with an AI draft only).", withheld=ONE_ARM_ONLY),
    )),
    Entity("reader_calls", "One row per read and finding: the reader's call in the final report.",
           ("read", "finding"), (
        Column("read", "integer", "Read id (see reads).", id_of="read"),
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
        Column("read", "integer", "Read id of the scored report (see reads).", id_of="read"),
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
        Column("guess", "string", "The arm whose report the expert named as written with AI assistance (the trial's "
               "optional blinding question), or unsure; empty where the question was not asked.",
               values=ARM_VALUES + "; unsure", arm=True,
               withheld="the arm an expert took for the one written with an AI draft: where experts can tell, their "
                        "majority tells which code is which"),
    )),
    Entity("reference_standard", "One row per case and finding: the reference standard.", ("case", "finding"), (
        Column("case", "string", "Case code."),
        Column("finding", "string", "Finding name."),
        Column("truth", "boolean", "1 if the finding is present; empty while undecided (pending).", values="0, 1"),
        Column("source", "string", "How the reference standard was set (e.g. majority, adjudicated, pending)."),
    )),
    Entity("screening", "One row per image that arrived for the trial (the screening log): enrolled or not, and why. "
           "No identifier of the patient or the image.", ("entry",), (
        Column("entry", "integer", "Screening-log row number."),
        Column("site", "string", "Site the image arrived for."),
        Column("received_at", "datetime", "When the image reached the platform (UTC)."),
        Column("source", "string", "How it arrived.", values="upload, dicom, stow-rs, simulator"),
        Column("outcome", "string", "What became of it (a case is a study: its first frontal image enrols it, the "
               "study's other images are added to it).", values="enrolled, added or not_enrolled"),
        Column("code", "string", "Why it was not enrolled: an eligibility rule, a refusal of the image (dicom:<code>) "
               "or the state of the trial or site; empty when enrolled."),
        Column("case", "string", "The case it became (enrolled) or joined (added)."),
    )),
    Entity("deviations", "One row per protocol deviation or intercurrent event.", ("deviation",), (
        Column("deviation", "integer", "Deviation number."),
        Column("kind", "string", "What happened.", values="draft_not_shown, outside_site_or_arm, "
               "past_window, reader_withdrawn, case_withdrawn, other"),
        Column("intercurrent", "boolean", "An intercurrent event (the estimand's strategy says how it counts).",
               values="0 or 1"),
        Column("occurred_at", "datetime", "When it happened (UTC)."),
        Column("case", "string", "Case concerned, if any."),
        Column("reader", "string", "Reader concerned, if any.", withheld=ARM_OF_READ),
        Column("read", "integer", "Read concerned, if any (see reads).", id_of="read", withheld=ARM_OF_READ),
        Column("details", "text", "What was recorded.", withheld=ARM_OF_READ),
        Column("reason", "text", "Why, as recorded."),
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
    return sort_rows(out, [names.index(k) for k in entity.key])


def sort_rows(out: list[list[Any]], key_idx: list[int]) -> list[list[Any]]:
    """`out` sorted in place by the columns at `key_idx` (then, where keys repeat, by every column); returned."""
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
                            "seconds": _seconds(p.get("seconds")),
                            "guess": p.get("guess_arm") or ("unsure" if p.get("ai_guess") == "unsure" else None)})
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


def surrogate_ids(snapshot: Mapping[str, Any], key: str) -> dict[str, dict[Any, int]]:
    """{"read": {database id: surrogate}, "report": {…}}: the ids of each kind found in any id column, numbered 1 to n
    in the order of their HMAC-SHA256 under `key` (the run's secret random key): a random permutation for each
    run, the same whenever the run's view is made again."""
    secret = key.encode("utf-8")
    found: dict[str, set[Any]] = {}
    for entity in ENTITIES:
        for i, c in enumerate(entity.columns):
            if c.id_of:
                found.setdefault(c.id_of, set()).update(
                    row[i] for row in snapshot["tables"].get(entity.name, []) if row[i] is not None)

    def rank(kind: str, value: Any) -> str:
        return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    return {kind: {v: n for n, v in enumerate(sorted(values, key=lambda v, k=kind: rank(k, v)), start=1)}
            for kind, values in found.items()}


def relabel(snapshot: Mapping[str, Any], *, label: Callable[[Any], Any], drop_withheld: bool,
            key: str | None = None) -> dict[str, Any]:
    """A copy of the snapshot with every arm value passed through `label`, the read and report ids replaced by the
    run's surrogates (with `key`; without one, a run made before surrogates: database ids), the rows sorted again
    by each entity's key as it now reads, and, optionally, the withheld columns dropped."""
    ids = surrogate_ids(snapshot, key) if key else {}
    tables = {}
    for entity in ENTITIES:
        arm_idx = {i for i, c in enumerate(entity.columns) if c.arm}
        id_map = {i: ids[c.id_of] for i, c in enumerate(entity.columns) if c.id_of and c.id_of in ids}
        width = len(entity.columns)  # a snapshot of an older format lacks the newest columns: read them as empty
        rows = [[label(v) if i in arm_idx else id_map[i].get(v, v) if i in id_map else v
                 for i, v in enumerate(row if len(row) == width else [*row, *[None] * (width - len(row))])]
                for row in snapshot["tables"].get(entity.name, [])]
        sort_rows(rows, [entity.names.index(k) for k in entity.key])
        # dropped after the sort, so that the masked view's rows are the coded view's, in the same order
        keep = [i for i, c in enumerate(entity.columns) if not (drop_withheld and c.withheld)]
        tables[entity.name] = [[row[i] for i in keep] for row in rows] if len(keep) < len(entity.columns) else rows
    return {**snapshot, "tables": tables, "ids": "surrogate" if key else "database", "columns": {
        e.name: [c.name for c in e.columns if not (drop_withheld and c.withheld)] for e in ENTITIES}}


def masked(snapshot: Mapping[str, Any], mapping: Mapping[str, str], *, key: str | None = None) -> dict[str, Any]:
    """Arms as X/Y by `mapping` (code → real arm), surrogate ids, one-arm columns withheld: what anyone sees before
    unblinding. Its rows are those of `coded` with the same arguments, in the same order."""
    inverse = arm_mapping_inverse(mapping)
    return relabel(snapshot, label=lambda v: inverse.get(v, v), drop_withheld=True, key=key)


def coded(snapshot: Mapping[str, Any], mapping: Mapping[str, str], *, key: str | None = None) -> dict[str, Any]:
    """Arms as X/Y and surrogate ids, every column kept: what the analysis computes on (it never needs the real
    names or ids)."""
    inverse = arm_mapping_inverse(mapping)
    return relabel(snapshot, label=lambda v: inverse.get(v, v), drop_withheld=False, key=key)


def unmasked(snapshot: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]:
    return relabel(snapshot, label=lambda v: v, drop_withheld=False, key=key)


def id_links(snapshot: Mapping[str, Any], key: str) -> list[list[Any]]:
    """[kind, surrogate, database id] rows (ids.csv of an unblinded export): the run's surrogates back to the
    platform's records."""
    return [[kind, n, real] for kind, m in sorted(surrogate_ids(snapshot, key).items())
            for real, n in sorted(m.items(), key=lambda kv: kv[1])]


def table(view: Mapping[str, Any], entity: str) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of an entity in a relabelled view."""
    return view["columns"][entity], view["tables"][entity]


def view_records(view: Mapping[str, Any], entity: str) -> list[dict[str, Any]]:
    names, rows = table(view, entity)
    return [dict(zip(names, row)) for row in rows]


def dictionary_rows(*, masked_view: bool, surrogates: bool = True) -> list[dict[str, str]]:
    """The data dictionary: one row per entity and column, in file order. Before unblinding the withheld columns
    are listed too, not in any file, each with why (`withheld`); id columns say that they hold surrogates."""
    out = []
    for entity in ENTITIES:
        for c in entity.columns:
            values = c.values.replace("{arms}", ARMS_MASKED if masked_view else ARMS_UNMASKED)
            description = c.description
            if c.id_of and surrogates:
                description += " " + SURROGATE_NOTE.format(kind=c.id_of, after="" if masked_view else SURROGATE_AFTER)
            withheld = ""
            if masked_view and c.withheld:
                withheld = f"withheld until unblinding (not in any file): {c.withheld}"
            out.append({"file": entity.name, "column": c.name, "type": c.type, "unit": c.unit,
                        "values": values, "description": description,
                        "file_description": entity.description, "key": "yes" if c.name in entity.key else "",
                        "withheld": withheld})
    return out


def withheld_columns() -> list[tuple[str, str, str]]:
    """(file, column, reason) of every column withheld before unblinding."""
    return [(e.name, c.name, c.withheld) for e in ENTITIES for c in e.columns if c.withheld]
