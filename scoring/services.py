"""Every write of the scoring app: building items, opening them, answers, corrections, the reference standard.

Items are built per *unit*, once every report of the unit is final, so that nothing about an item
(when it appeared, its id) can follow from how fast one arm finished:
- paired parallel: the case (its assisted and its standard report): a quality item per report, a pair item;
- case randomized: the case (its one report): a quality item; there is no pair;
- crossover: the case and one reader (that reader's two reports of the case): a quality item per report
  and a pair item comparing the same reader with and without AI, which is what the crossover is for.
Plus one findings item per case (the radiograph alone) when the trial keeps a reference standard.

All items of a case go to the same panel of `trial.experts_per_item` experts, chosen among the least
loaded, so that the two reports of a case are judged by the same people (a paired comparison).
"""
from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from core import clock, keys
from core.errors import ServiceError, WrongStatus
from core.text import clean_text
from reading.models import Read, Report
from trial import audit, lifecycle
from trial.models import Membership, Role, Status, Trial
from trial.selectors import require_role

from .errors import AlreadyAnswered, ItemSuperseded, NotAssigned, NotAvailable, NotEnoughExperts, ReportChanged
from .models import (
    COMMENT_LIMIT,
    MAX_SUBSCORES,
    PHASE,
    Adjudication,
    AiGuess,
    Assignment,
    Choice,
    FindingVote,
    Item,
    ItemKind,
    Mark,
    Preference,
    QualityScore,
    Radpeer,
    ReferenceMethod,
    ReferenceStandard,
    ScoringSettings,
    ShownReport,
    Side,
)
from .normalize import normalize_report, text_hash
from .selectors import Unit, expert_eligibility, latest_reports, ready_units, settings_of

logger = logging.getLogger(__name__)
_rng = keys.system_random

# Experts answer, and items are built, while reports exist and the trial is not locked.
OPEN_STATUSES = lifecycle.statuses_allowing(lifecycle.SCORE)
UNCHANGED = object()


def _locked(trial: Trial) -> Trial:
    return Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)


# ------------------------------------------------------------------------------------------ settings


def _clean_subscores(value) -> list[dict]:
    if not isinstance(value, list):
        raise ServiceError("Sub-scores must be a list of {key, label}.", field="subscores")
    cleaned, keys = [], set()
    for entry in value:
        key = str((entry or {}).get("key", "")).strip().lower() if isinstance(entry, dict) else ""
        label = str(entry.get("label", "")).strip() if isinstance(entry, dict) else ""
        if not key or not key.replace("_", "").isalnum() or len(key) > 30 or not label or len(label) > 60:
            raise ServiceError("Each sub-score needs a key (letters, digits, _; at most 30) and a label (at most 60).",
                               field="subscores")
        if key in keys:
            raise ServiceError(f"The sub-score “{key}” appears twice.", field="subscores")
        keys.add(key)
        cleaned.append({"key": key, "label": label, "help": str(entry.get("help", "")).strip()[:200]})
    if len(cleaned) > MAX_SUBSCORES:
        raise ServiceError(f"At most {MAX_SUBSCORES} sub-scores.", field="subscores")
    return cleaned


# What items freeze (the form, the text they show, the questions): these settings change only before items exist.
FROZEN_WITH_ITEMS = {"subscores": "the sub-scores", "reference_standard": "the reference standard",
                     "ask_which_assisted": "the question which report was written with AI assistance",
                     "canonical_text": "the canonical presentation", "aligned_pair": "the aligned pair display"}


@transaction.atomic
def update_settings(*, trial: Trial, by, subscores=UNCHANGED, reference_standard=UNCHANGED,
                    adjudicator=UNCHANGED, ask_which_assisted=UNCHANGED, canonical_text=UNCHANGED,
                    aligned_pair=UNCHANGED) -> ScoringSettings:
    """What items freeze (FROZEN_WITH_ITEMS) changes only before items exist; the adjudicator may change until
    lock."""
    require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    trial = _locked(trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus(f"Scoring settings can no longer change (the trial is {trial.status}).")
    current = settings_of(trial)
    changes: dict = {}
    if subscores is not UNCHANGED and _clean_subscores(subscores) != current.subscores:
        changes["subscores"] = _clean_subscores(subscores)
    for name, value in (("reference_standard", reference_standard), ("ask_which_assisted", ask_which_assisted),
                        ("canonical_text", canonical_text), ("aligned_pair", aligned_pair)):
        if value is not UNCHANGED and bool(value) != getattr(current, name):
            changes[name] = bool(value)
    if changes and Item.objects.filter(trial=trial).exists():
        names = [FROZEN_WITH_ITEMS[n] for n in changes]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        raise WrongStatus(f"{_first_upper(listed)} {'is' if len(names) == 1 else 'are'} frozen once scoring items "
                          "exist, so that every expert answers the same form about the same text. Nothing was "
                          "changed.")
    if adjudicator is not UNCHANGED and getattr(adjudicator, "pk", None) != current.adjudicator_id:
        if adjudicator is not None and (adjudicator.trial_id != trial.pk or adjudicator.role != Role.EXPERT):
            raise ServiceError("The adjudicator must be one of this trial's experts.", field="adjudicator")
        changes["adjudicator"] = adjudicator
    if not changes:
        return current
    if current.pk is None:
        current.save()
    for name, value in changes.items():
        setattr(current, name, value)
    current.updated_by = by
    current.save()
    audit.record(actor=by, action="scoring.settings_changed", obj=trial, payload={
        name: (value.pseudonym if isinstance(value, Membership) else value) for name, value in changes.items()})
    return current


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


# ------------------------------------------------------------------------------------------ reports and units


def _shown(report: Report, canonical: bool):
    return normalize_report(findings=report.findings, impression=report.impression, canonical=canonical)


def _shown_hash(report: Report, canonical: bool) -> str:
    return text_hash(_shown(report, canonical))


def _stale(shown: ShownReport, latest: dict[int, Report], canonical: bool) -> bool:
    """A later version that reads the same once normalized (say, only the finding flags changed) leaves the
    item valid; the comparison uses today's rules on both texts, so a change of rules supersedes nothing."""
    current = latest[shown.read_id]
    return current.pk != shown.report_id and _shown_hash(current, canonical) != _shown_hash(shown.report, canonical)


# ------------------------------------------------------------------------------------------ experts, panels, sides


def eligible_experts(trial: Trial) -> list[Membership]:
    """Experts holding no other role in the trial: a reader, senior, investigator or statistician could
    recognise reports (their own, ones they signed, or from the allocation), so is never on a panel."""
    eligible, conflicted = expert_eligibility(trial)
    if len(eligible) < trial.experts_per_item:
        message = (f"Scoring needs {trial.experts_per_item} experts per item (the trial's setting), but the trial "
                   f"has {len(eligible)} eligible expert{'s' if len(eligible) != 1 else ''}: invite more experts.")
        if conflicted:
            message += (" Not eligible because they hold another role in this trial: "
                        f"{', '.join(m.pseudonym for m in conflicted)}.")
        raise NotEnoughExperts(message)
    return eligible


def _case_loads(trial: Trial) -> Counter:
    rows = (Assignment.objects.filter(item__trial=trial).values("expert_id", "item__case_id").distinct())
    return Counter(row["expert_id"] for row in rows)


def _panel(*, trial: Trial, case_id: int, experts: list[Membership], adjudicator_id: int | None,
           loads: Counter) -> list[Membership]:
    """The case's panel: the one already chosen, else the least-loaded experts (random among equals).
    The adjudicator stays off panels when there are enough other experts, to settle disputes unbiased."""
    existing = list(Membership.objects.filter(scoring_assignments__item__case_id=case_id).distinct())
    if existing:
        return existing
    pool = [m for m in experts if m.pk != adjudicator_id]
    if len(pool) < trial.experts_per_item:
        pool = list(experts)
    _rng.shuffle(pool)
    pool.sort(key=lambda m: loads[m.pk])  # stable: the shuffle breaks ties at random
    panel = pool[:trial.experts_per_item]
    for member in panel:
        loads[member.pk] += 1
    return panel


def balanced_side(assisted_left: int, assisted_right: int, rng: random.Random | None = None) -> str:
    """Side of the assisted report for an expert's next pair: permuted blocks of two per expert (the
    side that is behind, else a coin), so that each expert sees it left in half of their pairs, ±1.
    The expert never learns which side was assisted, so the blocks cannot be guessed from the screen."""
    if assisted_left < assisted_right:
        return Side.A
    if assisted_right < assisted_left:
        return Side.B
    return (rng or _rng).choice([Side.A, Side.B])


def _side_counts(trial: Trial) -> dict[int, list[int]]:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    rows = (Assignment.objects.filter(item__trial=trial, item__kind=ItemKind.PAIR, item__superseded_at__isnull=True)
            .values_list("expert_id", "assisted_side"))
    for expert_id, side in rows:
        counts[expert_id][0 if side == Side.A else 1] += 1
    return counts


# ------------------------------------------------------------------------------------------ building


@dataclass
class BuildResult:
    created: dict[str, int]
    superseded: int

    @property
    def total(self) -> int:
        return sum(self.created.values())


def _create_item(*, trial: Trial, case_id: int, kind: str, unit: str, reads: list[Read], reports: dict[int, Report],
                 panel: list[Membership], sides: dict[int, list[int]], now, canonical: bool) -> Item:
    item = Item.objects.create(trial=trial, case_id=case_id, kind=kind, phase=PHASE[kind], unit=unit,
                               key=keys.new_key(), created_at=now)
    for read in reads:
        report = reports[read.pk]
        shown = _shown(report, canonical)
        ShownReport.objects.create(item=item, read=read, report=report, report_version=report.version, arm=read.arm,
                                   findings=shown.findings, impression=shown.impression, text_hash=text_hash(shown))
    for expert in panel:
        side = ""
        if kind == ItemKind.PAIR:
            counts = sides[expert.pk]
            side = balanced_side(counts[0], counts[1])
            counts[0 if side == Side.A else 1] += 1
        Assignment.objects.create(item=item, expert=expert, key=keys.new_key(), order_key=keys.new_order_key(),
                                  assisted_side=side, assigned_at=now)
    return item


def _build_unit(*, trial: Trial, unit: Unit, panel: list[Membership], reference: bool, current: set[str],
                sides: dict[int, list[int]], now, canonical: bool) -> Counter:
    wanted: list[tuple[str, str, list[Read]]] = []
    if reference:
        wanted.append((ItemKind.REFERENCE, f"r:{unit.case_id}", []))
    for read in unit.reads:
        wanted.append((ItemKind.QUALITY, f"q:{read.pk}", [read]))
    if len(unit.reads) == 2:
        wanted.append((ItemKind.PAIR, f"p:{unit.reads[0].pk}-{unit.reads[1].pk}", unit.reads))
    _rng.shuffle(wanted)  # creation order (and so primary keys) says nothing about the arm
    made: Counter = Counter()
    for kind, key, reads in wanted:
        if key in current:
            continue
        _create_item(trial=trial, case_id=unit.case_id, kind=kind, unit=key, reads=reads, reports=unit.reports,
                     panel=panel, sides=sides, now=now, canonical=canonical)
        current.add(key)
        made[kind] += 1
    return made


def _supersede_stale(*, trial: Trial, by, case_id: int | None = None) -> int:
    """Supersede current items showing a report whose latest version now reads differently (normalized)."""
    shown = (ShownReport.objects.filter(item__trial=trial, item__superseded_at__isnull=True)
             .select_related("read", "report"))
    if case_id is not None:
        shown = shown.filter(item__case_id=case_id)
    shown = list(shown)
    latest = latest_reports([s.read for s in shown])
    canonical = settings_of(trial).canonical_text
    stale = {s.item_id for s in shown if _stale(s, latest, canonical)}
    if not stale:
        return 0
    now = clock.now()
    reason = "A report shown in this item was corrected after the item was made."
    for item in Item.objects.filter(pk__in=stale).order_by("pk"):
        Item.objects.filter(pk=item.pk).update(superseded_at=now, superseded_reason=reason)
        audit.record(actor=by, action="scoring.item_superseded", obj=item, trial=trial,
                     payload={"item": item.pk, "kind": item.kind, "reason": reason})
    return len(stale)


def _build(*, trial: Trial, by, case_id: int | None = None) -> BuildResult:
    scoring_settings = settings_of(trial)
    superseded = _supersede_stale(trial=trial, by=by, case_id=case_id)
    units = ready_units(trial, case_id=case_id)
    current = set(Item.objects.filter(trial=trial, superseded_at__isnull=True).values_list("unit", flat=True))
    todo = [u for u in units if any(key not in current for key in _unit_keys(u, scoring_settings.reference_standard))]
    created: Counter = Counter()
    if todo:
        experts = eligible_experts(trial)
        loads, sides, now = _case_loads(trial), _side_counts(trial), clock.now()
        _rng.shuffle(todo)
        for unit in todo:
            panel = _panel(trial=trial, case_id=unit.case_id, experts=experts,
                           adjudicator_id=scoring_settings.adjudicator_id, loads=loads)
            created += _build_unit(trial=trial, unit=unit, panel=panel, reference=scoring_settings.reference_standard,
                                   current=current, sides=sides, now=now, canonical=scoring_settings.canonical_text)
    if created:
        audit.record(actor=by, action="scoring.items_built", obj=trial,
                     payload={"created": dict(created), "superseded": superseded})
    return BuildResult(created=dict(created), superseded=superseded)


def _unit_keys(unit: Unit, reference: bool) -> list[str]:
    keys = [f"q:{read.pk}" for read in unit.reads]
    if len(unit.reads) == 2:
        keys.append(f"p:{unit.reads[0].pk}-{unit.reads[1].pk}")
    if reference:
        keys.append(f"r:{unit.case_id}")
    return keys


@transaction.atomic
def build_items(*, trial: Trial, by=None) -> BuildResult:
    """Build the items of every ready unit and rebuild those whose report changed. Idempotent.

    `by` None is the system (the task run when the trial moves to scoring); a person must be an investigator.
    """
    if by is not None:
        require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    trial = _locked(trial)
    if trial.status not in OPEN_STATUSES:
        raise WrongStatus(f"Scoring items are built while the trial is reading or scoring (it is {trial.status}).")
    eligible_experts(trial)  # refuse early and clearly, even when nothing is ready yet
    return _build(trial=trial, by=by)


@transaction.atomic
def note_build_refused(*, trial: Trial, reason: str) -> None:
    """The automatic build could not run: keep why in the audit log (the investigator's page says it too)."""
    audit.record(actor=None, action="scoring.build_refused", obj=trial, payload={"reason": reason})


def build_open_trials() -> int:
    """Build the items of cases that became ready since the last build (a late sign-off, a corrected report), in
    every trial that is scoring, or reading with scoring already started; a trial whose build is refused is logged
    and the others go on. The number of items built."""
    built = 0
    # A reader study builds while reading only once an investigator started scoring; a prospective trial, always.
    trials = Trial.objects.filter(Q(status__in=[s for s in OPEN_STATUSES if s != Status.READING])
                                  | Q(status=Status.READING, scoring_items__isnull=False)).distinct()
    for trial in trials:
        try:
            built += build_items(trial=trial, by=None).total
        except ServiceError as exc:
            logger.warning("Scoring items of %s not built: %s", trial.code, exc.message)
    return built


@transaction.atomic
def rebuild_case(*, trial: Trial, case_id: int, by=None) -> BuildResult:
    trial = _locked(trial)
    return _build(trial=trial, by=by, case_id=case_id)


@transaction.atomic
def build_case_items(*, trial: Trial, case_id: int) -> BuildResult:
    """The system builds one case's items once its reports are final, while the trial scores (prospective: from the
    first signed case on). Idempotent."""
    trial = _locked(trial)
    if trial.status not in OPEN_STATUSES:
        raise WrongStatus(f"Scoring items are built while the trial is reading or scoring (it is {trial.status}).")
    eligible_experts(trial)
    return _build(trial=trial, by=None, case_id=case_id)


# ------------------------------------------------------------------------------------------ experts' answers


def _assignment_for(*, assignment: Assignment, by, kind: str) -> Assignment:
    """Lock the assignment and check that `by` may answer it now; each refusal says why."""
    assignment = (Assignment.objects.select_for_update(of=("self",)).select_related("item__trial", "expert")
                  .filter(pk=assignment.pk).first())
    if assignment is None or assignment.expert.user_id != by.pk or assignment.expert.role != Role.EXPERT:
        raise NotAssigned("This item is not assigned to you.")
    item = assignment.item
    if item.kind != kind:
        raise ServiceError(f"This item asks for a {item.get_kind_display().lower()}, not this kind of answer.")
    if item.superseded_at is not None:
        raise ItemSuperseded("This item was replaced because a report in it was corrected; "
                             "open the new item from your list.")
    if item.trial.status not in OPEN_STATUSES:
        raise WrongStatus(f"Scoring is closed (the trial is {item.trial.status}); nothing was saved.")
    earlier = (Assignment.objects.filter(expert=assignment.expert, item__case_id=item.case_id,
                                         item__phase__lt=item.phase, item__superseded_at__isnull=True)
               .filter(qualityscores__isnull=True, preferences__isnull=True, findingvotes__isnull=True))
    if earlier.exists():
        raise NotAvailable("Answer the earlier items of this radiograph on your list first.")
    return assignment


def _refuse_if_changed(item: Item) -> None:
    shown = list(item.shown_reports.select_related("read", "report"))
    latest = latest_reports([s.read for s in shown])
    canonical = settings_of(item.trial).canonical_text
    if any(_stale(s, latest, canonical) for s in shown):
        raise ReportChanged("A report in this item was corrected after the item was made, so your answer was "
                            "not saved. The item is rebuilt with the corrected report: open it again from your list.")


def _clean_text(value: str, name: str) -> str:
    return clean_text(value, field=name, limit=COMMENT_LIMIT, strip=True)


def _require_expert(assignment: Assignment, by) -> None:
    if assignment.expert.user_id != getattr(by, "pk", None):
        raise NotAssigned("This item is not assigned to you.")


def _likert(value, name: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ServiceError(f"{label} must be a whole number from 1 to 5.", field=name)
    return value


def _answer(*, assignment: Assignment, by, kind: str, model, values: dict, reason: str | None):
    """Write the next version of an answer. A refusal writes nothing, except that an item whose report
    changed is rebuilt (in its own transaction, after this one is rolled back)."""
    try:
        with transaction.atomic():
            locked = _assignment_for(assignment=assignment, by=by, kind=kind)
            _refuse_if_changed(locked.item)
            last = model.objects.filter(assignment=locked).order_by("-version").first()
            if reason is None and last is not None:
                raise AlreadyAnswered("You already answered this item; an answer is final. "
                                      "To change it, submit a correction with a reason.")
            if reason is not None:
                if last is None:
                    raise ServiceError("There is no answer to correct yet; submit one first.")
                reason = _clean_text(reason, "reason")
                if not reason:
                    raise ServiceError("A correction needs a reason.", field="reason")
            answer = model.objects.create(assignment=locked, version=last.version + 1 if last else 1,
                                          correction_reason=reason or "", opened_at=locked.opened_at,
                                          submitted_at=clock.now(), **values)
            # Ids and the version only: the audit log is the investigators', and they see no results before unblinding.
            audit.record(actor=by, action=f"scoring.{kind}_{'corrected' if reason else 'submitted'}", obj=answer,
                         trial=locked.item.trial, payload={"assignment": locked.pk, "item": locked.item_id,
                                                           "version": answer.version})
            if kind == ItemKind.REFERENCE:
                _decide_reference(item=locked.item, by=by)
            return answer
    except ReportChanged:
        try:
            rebuild_case(trial=assignment.item.trial, case_id=assignment.item.case_id, by=None)
        except ServiceError as exc:  # the refusal stands; the next build will retry
            logger.warning("Could not rebuild the items of case %s: %s", assignment.item.case_id, exc.message)
        raise


def _quality_values(*, assignment: Assignment, overall, subscores, radpeer, comment) -> dict:
    overall = _likert(overall, "overall", "The overall score")
    definitions = settings_of(assignment.item.trial).subscores
    subscores = subscores or {}
    if not isinstance(subscores, dict):
        raise ServiceError("Sub-scores must be given by name.", field="subscores")
    unknown = set(subscores) - {d["key"] for d in definitions}
    if unknown:
        raise ServiceError(f"Unknown sub-score(s): {', '.join(sorted(unknown))}.", field="subscores")
    cleaned = {}
    for definition in definitions:
        value = subscores.get(definition["key"])
        if value is not None:  # sub-scores are optional, each on the same 1–5 scale
            cleaned[definition["key"]] = _likert(value, "subscores", f"The {definition['label'].lower()} score")
    if radpeer not in Radpeer.values:
        raise ServiceError("The RADPEER score must be one of 1, 2a, 2b, 3a, 3b.", field="radpeer")
    return {"overall": overall, "subscores": cleaned, "radpeer": radpeer, "comment": _clean_text(comment, "comment")}


def submit_quality_score(*, assignment: Assignment, by, overall, radpeer, subscores: dict | None = None,
                         comment: str = "", reason: str | None = None) -> QualityScore:
    """One report alone: overall 1–5, optional sub-scores 1–5, RADPEER, comment. `reason` makes it a correction."""
    _require_expert(assignment, by)
    values = _quality_values(assignment=assignment, overall=overall, subscores=subscores, radpeer=radpeer,
                             comment=comment)
    return _answer(assignment=assignment, by=by, kind=ItemKind.QUALITY, model=QualityScore, values=values,
                   reason=reason)


def _ai_guess(*, trial: Trial, ai_guess: str | None) -> str:
    """The answer to "Which report was written with AI assistance?": required where the trial asks it (A, B or
    can't tell), refused where it does not (an answer to a question nobody asked would read as data)."""
    ai_guess = ai_guess or ""
    if not settings_of(trial).ask_which_assisted:
        if ai_guess:
            raise ServiceError("This trial does not ask which report was written with AI assistance; leave that "
                               "answer out. Nothing was saved.", field="ai_guess")
        return ""
    if ai_guess not in AiGuess.values:
        raise ServiceError("Say which report you think was written with AI assistance: report A, report B or "
                           "can't tell.", field="ai_guess")
    return ai_guess


def submit_preference(*, assignment: Assignment, by, choice: str, reason_text: str = "", ai_guess: str = "",
                      reason: str | None = None) -> Preference:
    """Report A (left), report B (right) or, where the trial allows it, no preference; where the trial asks it,
    which report the expert thinks was written with AI assistance (A, B or "unsure"). The side mapping stays
    on the assignment, so the analysis recovers assisted vs standard and left vs right."""
    _require_expert(assignment, by)
    allowed = [Choice.A, Choice.B] + ([Choice.NONE] if assignment.item.trial.allow_no_preference else [])
    if choice not in allowed:
        raise ServiceError("Choose report A or report B" + (", or no preference." if len(allowed) == 3 else
                                                            " (this trial has no “no preference” option)."),
                           field="choice")
    guess = _ai_guess(trial=assignment.item.trial, ai_guess=ai_guess)
    return _answer(assignment=assignment, by=by, kind=ItemKind.PAIR, model=Preference,
                   values={"choice": choice, "reason": _clean_text(reason_text, "reason_text"), "ai_guess": guess},
                   reason=reason)


def submit_findings(*, assignment: Assignment, by, marks: dict, reason: str | None = None) -> FindingVote:
    """Every trial finding marked present, absent or uncertain on the radiograph alone."""
    _require_expert(assignment, by)
    findings = list(assignment.item.trial.findings)
    if not isinstance(marks, dict):
        raise ServiceError("Mark each finding as present, absent or uncertain.", field="marks")
    unknown = set(marks) - set(findings)
    if unknown:
        raise ServiceError(f"Unknown finding(s): {', '.join(sorted(unknown))}.", field="marks")
    missing = [f for f in findings if f not in marks]
    if missing:
        raise ServiceError(f"Mark every finding; missing: {', '.join(missing)}.", field="marks")
    if any(value not in Mark.values for value in marks.values()):
        raise ServiceError("Each finding is present, absent or uncertain.", field="marks")
    return _answer(assignment=assignment, by=by, kind=ItemKind.REFERENCE, model=FindingVote,
                   values={"marks": {f: marks[f] for f in findings}}, reason=reason)


@transaction.atomic
def open_assignment(*, assignment: Assignment, by) -> Assignment:
    """Stamp the first time the server sends an item to its expert (the start of the time spent on it)."""
    _require_expert(assignment, by)
    if assignment.opened_at is None and assignment.item.superseded_at is None:
        now = clock.now()
        if Assignment.objects.filter(pk=assignment.pk, opened_at__isnull=True).update(opened_at=now):
            assignment.opened_at = now
            audit.record(actor=by, action="scoring.item_opened", obj=assignment, trial=assignment.item.trial,
                         payload={"assignment": assignment.pk, "item": assignment.item_id})
    return assignment


# ------------------------------------------------------------------------------------------ reference standard


def _latest_votes(item: Item) -> tuple[int, list[FindingVote]]:
    assignments = list(item.assignments.all())
    votes = []
    for a in assignments:
        vote = FindingVote.objects.filter(assignment=a).order_by("-version").first()
        if vote is not None:
            votes.append(vote)
    return len(assignments), votes


def _decide_reference(*, item: Item, by) -> None:
    """Once the whole panel has marked the case: more than half of the panel decides; otherwise the
    finding waits for the adjudicator (a tie, or too many "uncertain")."""
    panel_size, votes = _latest_votes(item)
    if len(votes) < panel_size:
        return
    now = clock.now()
    for finding in item.trial.findings:
        counts = Counter(vote.marks.get(finding) for vote in votes)
        present, absent = counts[Mark.PRESENT], counts[Mark.ABSENT]
        values = {"votes_present": present, "votes_absent": absent, "votes_uncertain": counts[Mark.UNCERTAIN]}
        existing = ReferenceStandard.objects.filter(case=item.case, finding=finding).first()
        if 2 * present > panel_size or 2 * absent > panel_size:
            values.update(present=2 * present > panel_size, method=ReferenceMethod.MAJORITY, decided_by=None)
        elif existing is not None and existing.method == ReferenceMethod.ADJUDICATED:
            values.update(present=existing.present, method=ReferenceMethod.ADJUDICATED, decided_by=existing.decided_by)
        else:
            values.update(present=None, method=ReferenceMethod.PENDING, decided_by=None)
        if existing is not None and all(getattr(existing, k) == v for k, v in values.items()):
            continue
        reference, _ = ReferenceStandard.objects.update_or_create(
            trial=item.trial, case=item.case, finding=finding, defaults={**values, "decided_at": now})
        audit.record(actor=by, action="scoring.reference_decided", obj=reference, trial=item.trial,
                     payload={"case": item.case_id, "finding": finding, "method": reference.method})


@transaction.atomic
def adjudicate(*, item: Item, by, decisions: dict, reason: str = "") -> list[ReferenceStandard]:
    """The adjudicator settles the findings of one case on which the panel has no majority."""
    trial = item.trial
    adjudicator = settings_of(trial).adjudicator
    if adjudicator is None or adjudicator.user_id != by.pk:
        raise NotAssigned("Only the trial's adjudicator can settle findings.")
    if trial.status not in OPEN_STATUSES:
        raise WrongStatus(f"Scoring is closed (the trial is {trial.status}); nothing was saved.")
    disputed = {r.finding: r for r in ReferenceStandard.objects.select_for_update().filter(
        case=item.case, method__in=[ReferenceMethod.PENDING, ReferenceMethod.ADJUDICATED])}
    if not isinstance(decisions, dict) or not decisions:
        raise ServiceError("Decide at least one finding (present or absent).", field="decisions")
    unknown = set(decisions) - set(disputed)
    if unknown:
        raise ServiceError(f"Not awaiting adjudication on this case: {', '.join(sorted(unknown))}.", field="decisions")
    if any(not isinstance(v, bool) for v in decisions.values()):
        raise ServiceError("Each decision is present (true) or absent (false).", field="decisions")
    reason, now, decided = _clean_text(reason, "reason"), clock.now(), []
    for finding, present in decisions.items():
        reference = disputed[finding]
        Adjudication.objects.create(reference=reference, present=present, reason=reason, adjudicator=adjudicator,
                                    decided_at=now)
        ReferenceStandard.objects.filter(pk=reference.pk).update(
            present=present, method=ReferenceMethod.ADJUDICATED, decided_by=adjudicator, decided_at=now)
        audit.record(actor=by, action="scoring.reference_adjudicated", obj=reference, trial=trial,
                     payload={"case": item.case_id, "finding": finding})
        reference.refresh_from_db()
        decided.append(reference)
    return decided
