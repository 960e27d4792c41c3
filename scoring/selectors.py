"""Every read of scoring data, scoped. The blinding lives here, once: what an expert can reach is built by
`item_view` and `worklist` from an allow-list of fields (normalized text, the radiograph, the clinical
history, the expert's own answers), never from a model or a serializer of one. No arm, reader, time,
draft, site, date, case code, database id or other expert's answer leaves through them.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q
from django.urls import reverse

from ai import selectors as ai_selectors
from ai.models import DraftStatus
from reading.models import Read, ReadStatus, Report
from reading.selectors import case_images, image_file, primary_image, viewer_images
from trial import lifecycle
from trial.access import Access
from trial.models import Arm, CaseImage, Design, Membership, Role, Status, Trial

from .models import (
    LIKERT,
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
from .normalize import canonical_report, normalize_report
from .style_check import MIN_PAIRS, ReportPair, StyleCheckResult
from .style_check import style_check as run_style_check

NOT_ASSIGNED = "This item is not assigned to you."
NOT_ADJUDICATOR = "Only the trial's adjudicator can open the adjudication queue."
ANSWER_MODEL = {ItemKind.QUALITY: QualityScore, ItemKind.PAIR: Preference, ItemKind.REFERENCE: FindingVote}
# Labels experts see; chosen to name no arm ("standard" is never shown to an expert, even as a word).
KIND_LABEL = {ItemKind.REFERENCE: "Findings", ItemKind.QUALITY: "Report quality", ItemKind.PAIR: "Comparison"}


def settings_of(trial: Trial) -> ScoringSettings:
    """The trial's scoring settings, or the defaults (unsaved) when none were set."""
    return (ScoringSettings.objects.filter(trial=trial).select_related("adjudicator").first()
            or ScoringSettings(trial=trial))


# ------------------------------------------------------------- reports and experts (no permission check: for services)


def latest_reports(reads) -> dict[int, Report]:
    """read id → its latest report version."""
    latest: dict[int, Report] = {}
    for report in Report.objects.filter(read__in=reads).order_by("read_id", "version"):
        latest[report.read_id] = report
    return latest


def _is_final(read: Read, report: Report | None, require_signoff: bool) -> bool:
    return (read.status == ReadStatus.SUBMITTED and report is not None
            and (not require_signoff or report.signed_at is not None))


@dataclass
class Unit:
    case_id: int
    reads: list[Read]                     # assisted first when there are two
    reports: dict[int, Report] = field(default_factory=dict)


def ready_units(trial: Trial, *, case_id: int | None = None) -> list[Unit]:
    """Units whose every report is final (signed, where the trial asks for it): see scoring.services."""
    # A re-routed read (its reader withdrawn) is replaced by another; a withdrawn case is scored no further.
    reads = (Read.objects.filter(trial=trial, case__withdrawn_at__isnull=True).exclude(status=ReadStatus.REROUTED)
             .select_related("case", "reader"))
    if case_id is not None:
        reads = reads.filter(case_id=case_id)
    reads = list(reads)
    latest = latest_reports(reads)
    groups: dict[tuple, list[Read]] = defaultdict(list)
    for read in reads:
        groups[(read.case_id, read.reader_id) if trial.design == Design.CROSSOVER else (read.case_id,)].append(read)
    units = []
    for key, group in groups.items():
        arms = sorted(read.arm for read in group)
        expected = [Arm.ASSISTED.value, Arm.STANDARD.value] if trial.design != Design.CASE_RANDOMIZED else arms[:1]
        if arms != expected:
            continue
        if not all(_is_final(read, latest.get(read.pk), trial.require_signoff) for read in group):
            continue
        group.sort(key=lambda read: read.arm != Arm.ASSISTED)
        units.append(Unit(case_id=key[0], reads=group, reports={read.pk: latest[read.pk] for read in group}))
    return units


def expert_eligibility(trial: Trial) -> tuple[list[Membership], list[Membership]]:
    """(eligible, conflicted): an expert who holds another role in the trial could recognise reports."""
    experts = list(trial.memberships.filter(role=Role.EXPERT).select_related("user").order_by("id"))
    others = set(trial.memberships.exclude(role=Role.EXPERT).values_list("user_id", flat=True))
    return [m for m in experts if m.user_id not in others], [m for m in experts if m.user_id in others]


# ----------------------------------------------------------------------------- the expert's own work


def _answered() -> Q:
    return Q(qualityscores__isnull=False) | Q(preferences__isnull=False) | Q(findingvotes__isnull=False)


def _my_current(expert: Membership):
    answered = Assignment.objects.filter(pk=OuterRef("pk")).filter(_answered())
    return (Assignment.objects.filter(expert=expert, item__superseded_at__isnull=True)
            .select_related("item").annotate(done=Exists(answered)).order_by("item__phase", "order_key"))


@dataclass(frozen=True)
class WorklistRow:
    key: str
    position: int
    kind: str
    label: str
    done: bool
    available: bool


@dataclass(frozen=True)
class Worklist:
    rows: list[WorklistRow]
    done: int
    total: int

    @property
    def resume(self) -> WorklistRow | None:
        return next((r for r in self.rows if r.available and not r.done), None)


def _rows(assignments) -> list[WorklistRow]:
    # An item opens once the expert has answered the earlier phases of the same case (image, then each
    # report alone, then the pair).
    open_phases: dict[int, set[int]] = defaultdict(set)
    for a in assignments:
        if not a.done:
            open_phases[a.item.case_id].add(a.item.phase)
    return [WorklistRow(a.key, i + 1, a.item.kind, KIND_LABEL[a.item.kind], a.done,
                        not any(p < a.item.phase for p in open_phases[a.item.case_id]))
            for i, a in enumerate(assignments)]


def worklist(*, access: Access) -> Worklist:
    """The expert's current items in their stored random order: position, kind and state only."""
    rows = _rows(list(_my_current(access.membership(Role.EXPERT))))
    return Worklist(rows, sum(r.done for r in rows), len(rows))


def _with_study_flag(items, case: str):
    """Mark whether the case (at the path `case`) has images besides its primary one, so that a case with none (the
    usual chest film alone) costs no query for them."""
    return items.annotate(study_has_images=Exists(CaseImage.objects.filter(case_id=OuterRef(case))))


def _assignments():
    return _with_study_flag(Assignment.objects.select_related("item__trial", "item__case", "expert"), "item__case")


def assignment_for_expert(*, access: Access, key: str) -> Assignment:
    """The expert's own assignment in the trial of `access`, by its opaque key; anything else gets the same
    refusal (after the refusal of a user who is no expert of the trial)."""
    expert = access.membership(Role.EXPERT)
    assignment = _assignments().filter(key=key, expert=expert).first()
    if assignment is None:
        raise PermissionDenied(NOT_ASSIGNED)
    return assignment


def own_assignment(*, key: str, user) -> Assignment:
    """The user's own assignment by its opaque key alone (the API's item URLs name no trial); anything else gets
    the same refusal."""
    assignment = (_assignments().filter(key=key, expert__user_id=user.pk, expert__role=Role.EXPERT).first()
                  if getattr(user, "is_authenticated", False) else None)
    if assignment is None:
        raise PermissionDenied(NOT_ASSIGNED)
    return assignment


def _answer_payload(kind: str, answer) -> dict:
    common = {"version": answer.version, "correction_reason": answer.correction_reason}
    if kind == ItemKind.QUALITY:
        return {**common, "overall": answer.overall, "subscores": answer.subscores, "radpeer": answer.radpeer,
                "comment": answer.comment}
    if kind == ItemKind.PAIR:
        return {**common, "choice": answer.choice, "reason": answer.reason, "ai_guess": answer.ai_guess}
    return {**common, "marks": answer.marks}


def _shown_reports(assignment: Assignment) -> list[dict]:
    shown = list(assignment.item.shown_reports.order_by("id"))
    if assignment.item.kind != ItemKind.PAIR:
        return [{"side": None, "label": "Report", "findings": s.findings, "impression": s.impression} for s in shown]
    by_arm = {s.arm: s for s in shown}
    left = Arm.ASSISTED if assignment.assisted_side == Side.A else Arm.STANDARD
    right = Arm.STANDARD if left == Arm.ASSISTED else Arm.ASSISTED
    return [{"side": side, "label": f"Report {side}", "findings": by_arm[arm].findings,
             "impression": by_arm[arm].impression} for side, arm in ((Side.A, left), (Side.B, right))]


def _replacement(assignment: Assignment) -> Assignment | None:
    return (Assignment.objects.filter(expert=assignment.expert, item__unit=assignment.item.unit,
                                      item__trial=assignment.item.trial, item__superseded_at__isnull=True).first())


# ----------------------------------------------------------------------------- the images of a case's study


def study_images(case, *, has_images: bool = True) -> list:
    """The images of the case's study in the order they are shown: the primary (the case itself) first, then the
    case's other images (trial.models.CaseImage, as received; staged images have no case and are never among them).
    NO PERMISSION CHECK: for the item and adjudication views and images below, after their own checks."""
    return case_images(case=case) if has_images else [case]


def _study_file(case, *, position: int, kind: str, has_images: bool = True):
    """The file `kind` ("display" or "values") of the image at `position` of the case's study, or a refusal."""
    images = study_images(case, has_images=has_images and position != 1)
    field_file = image_file(images, position=position, kind=kind)
    if field_file is None:
        raise PermissionDenied("Unknown image.")
    return field_file


def item_view(*, assignment: Assignment) -> dict:
    """Everything the scoring screen and the API show for one assignment: the blinded allow-list."""
    item, trial, case = assignment.item, assignment.item.trial, assignment.item.case
    scoring_settings = settings_of(trial)
    rows = _rows(list(_my_current(assignment.expert)))
    row = next((r for r in rows if r.key == assignment.key), None)
    model = ANSWER_MODEL[item.kind]
    answer = model.objects.filter(assignment=assignment).order_by("-version").first()
    nxt = next((r for r in rows if r.available and not r.done and r.key != assignment.key), None)
    replacement = _replacement(assignment) if item.superseded_at else None
    key = assignment.key
    # Not yet available (an earlier item of the same radiograph is unanswered): nothing of the case is
    # sent, so that the order image → each report → the pair holds whatever URL the expert opens.
    shown = bool(row and row.available) or answer is not None

    def url(n: int, kind: str) -> str:  # the primary at its own URL, as before a study had more images
        return (reverse("scoring:item_image", args=[trial.code, key, kind]) if n == 1
                else reverse("scoring:item_study_image", args=[trial.code, key, n, kind]))

    images = viewer_images(study_images(case, has_images=getattr(assignment, "study_has_images", True)),
                            url) if shown else []
    return {
        "key": key, "kind": item.kind, "label": KIND_LABEL[item.kind],
        "position": row.position if row else None, "of": len(rows),
        "available": bool(row and row.available), "replaced": item.superseded_at is not None,
        "replacement_key": replacement.key if replacement else None,
        "open": trial.allows(lifecycle.SCORE),
        "image": primary_image(images),
        "images": images,
        "clinical_history": case.clinical_history if shown else "",
        "reports": _shown_reports(assignment) if shown else [],
        # The pair's sections side by side in rows of equal height (the trial's presentation setting).
        "aligned": item.kind == ItemKind.PAIR and scoring_settings.aligned_pair,
        "findings": list(trial.findings) if item.kind == ItemKind.REFERENCE else [],
        "scale": {
            "likert": [{"value": v, "label": label} for v, label in LIKERT.items()],
            "subscores": [{"key": d["key"], "label": d["label"], "help": d.get("help", "")}
                          for d in scoring_settings.subscores] if item.kind == ItemKind.QUALITY else [],
            "radpeer": [{"value": c.value, "label": c.label} for c in Radpeer] if item.kind == ItemKind.QUALITY else [],
            "choices": [{"value": c.value, "label": c.label} for c in Choice
                        if c != Choice.NONE or trial.allow_no_preference] if item.kind == ItemKind.PAIR else [],
            # "Which report was written with AI assistance?", where the trial asks it (pairs only).
            "ai_guess": [{"value": g.value, "label": g.label} for g in AiGuess]
            if item.kind == ItemKind.PAIR and scoring_settings.ask_which_assisted else [],
            "marks": [{"value": m.value, "label": m.label} for m in Mark] if item.kind == ItemKind.REFERENCE else [],
        },
        "answer": _answer_payload(item.kind, answer) if answer else None,
        "next_key": nxt.key if nxt else None,
    }


def opens(view: dict) -> bool:
    """Whether showing the item (its item_view) starts its time: the case is on screen, the trial takes answers and
    the item is current."""
    return view["image"] is not None and view["open"] and not view["replaced"]


def image_for_expert(*, access: Access, key: str, kind: str, position: int = 1):
    """A file of an image of the study of the expert's own item (1: the primary image)."""
    assignment = assignment_for_expert(access=access, key=key)
    return _study_file(assignment.item.case, position=position, kind=kind, has_images=assignment.study_has_images)


# ----------------------------------------------------------------------------- the adjudicator


def is_adjudicator(*, access: Access) -> bool:
    """Whether the asking user is the trial's adjudicator (an expert the investigator designated)."""
    if not access.has(Role.EXPERT):
        return False
    adjudicator_id = settings_of(access.trial).adjudicator_id
    return adjudicator_id is not None and adjudicator_id == access.membership(Role.EXPERT).pk


def _require_adjudicator(*, access: Access) -> None:
    access.require(Role.EXPERT)
    if not is_adjudicator(access=access):
        raise PermissionDenied(NOT_ADJUDICATOR)


def _disputed(trial: Trial):
    return ReferenceStandard.objects.filter(trial=trial, method__in=[ReferenceMethod.PENDING,
                                                                     ReferenceMethod.ADJUDICATED])


def adjudication_queue(*, access: Access) -> list[dict]:
    """Cases with a finding the panel could not settle, by opaque key: no case code, no votes."""
    _require_adjudicator(access=access)
    trial = access.trial
    pending = defaultdict(list)
    decided = defaultdict(list)
    for ref in _disputed(trial).order_by("finding"):
        (pending if ref.method == ReferenceMethod.PENDING else decided)[ref.case_id].append(ref.finding)
    items = Item.objects.filter(trial=trial, kind=ItemKind.REFERENCE, superseded_at__isnull=True,
                                case_id__in=set(pending) | set(decided)).order_by("key")
    return [{"key": item.key, "number": i + 1, "pending": pending[item.case_id], "adjudicated": decided[item.case_id]}
            for i, item in enumerate(items)]


def adjudication_item(*, access: Access, key: str) -> Item:
    _require_adjudicator(access=access)
    item = (_with_study_flag(Item.objects.select_related("case", "trial"), "case")
            .filter(trial=access.trial, key=key, kind=ItemKind.REFERENCE)
            .filter(case__reference_standards__method__in=[ReferenceMethod.PENDING, ReferenceMethod.ADJUDICATED])
            .first())
    if item is None:
        raise PermissionDenied("This case is not in the adjudication queue.")
    return item


def adjudication_view(*, item: Item) -> dict:
    """The radiograph and the disputed findings, with the adjudicator's own earlier decision: not the votes,
    so that the tie is broken by an independent reading."""
    case, trial = item.case, item.trial
    own = {a.reference.finding: a.present for a in Adjudication.objects.filter(reference__case=case)
           .select_related("reference").order_by("decided_at")}

    def url(n: int, kind: str) -> str:
        return (reverse("scoring:adjudication_image", args=[trial.code, item.key, kind]) if n == 1
                else reverse("scoring:adjudication_study_image", args=[trial.code, item.key, n, kind]))

    images = viewer_images(study_images(case, has_images=getattr(item, "study_has_images", True)), url)
    return {
        "key": item.key,
        "image": primary_image(images),
        "images": images,
        "clinical_history": case.clinical_history,
        "findings": [{"finding": ref.finding, "pending": ref.method == ReferenceMethod.PENDING,
                      "decision": own.get(ref.finding)}
                     for ref in _disputed(trial).filter(case=case).order_by("finding")],
    }


def adjudication_image(*, access: Access, key: str, kind: str, position: int = 1):
    """A file of an image of the study of a case in the adjudication queue (1: the primary image)."""
    item = adjudication_item(access=access, key=key)
    return _study_file(item.case, position=position, kind=kind, has_images=item.study_has_images)


# ----------------------------------------------------------------------------- investigators: completion, not results


def progress(*, access: Access) -> dict:
    """Completion only: counts per expert and per kind. No score, preference or vote, until unblinding."""
    access.require(Role.INVESTIGATOR)
    trial = access.trial
    answered = Assignment.objects.filter(pk=OuterRef("pk")).filter(_answered())
    per_expert = {}
    rows = (Assignment.objects.filter(item__trial=trial, item__superseded_at__isnull=True)
            .annotate(done=Exists(answered))
            .values("expert__pseudonym", "expert__user__username", "item__kind", "done"))
    for row in rows:
        entry = per_expert.setdefault(row["expert__pseudonym"], {
            "pseudonym": row["expert__pseudonym"], "username": row["expert__user__username"], "assigned": 0, "done": 0,
            **{kind.value: {"assigned": 0, "done": 0} for kind in ItemKind}})
        for bucket in (entry, entry[row["item__kind"]]):
            bucket["assigned"] += 1
            bucket["done"] += int(row["done"])
    items = Item.objects.filter(trial=trial)
    eligible, conflicted = expert_eligibility(trial)
    scoring_settings = settings_of(trial)
    built = set(items.filter(superseded_at__isnull=True).values_list("unit", flat=True))
    units = ready_units(trial)
    waiting = sum(1 for u in units if f"q:{u.reads[0].pk}" not in built)
    problems = []
    if len(eligible) < trial.experts_per_item:
        problems.append(f"Items need {trial.experts_per_item} experts each; the trial has {len(eligible)} eligible."
                        + (f" Holding another role (not eligible): {', '.join(m.pseudonym for m in conflicted)}."
                           if conflicted else ""))
    if scoring_settings.reference_standard and scoring_settings.adjudicator_id is None:
        problems.append("No adjudicator is designated: findings without a panel majority cannot be settled.")
    reference = ReferenceStandard.objects.filter(trial=trial).values("method").annotate(n=Count("id"))
    return {
        "experts": sorted(per_expert.values(), key=lambda e: e["pseudonym"]),
        "items": {kind.value: items.filter(kind=kind, superseded_at__isnull=True).count() for kind in ItemKind},
        "superseded": items.filter(superseded_at__isnull=False).count(),
        "units_ready_not_built": waiting,
        "reference": {row["method"]: row["n"] for row in reference},
        "adjudicator": scoring_settings.adjudicator.pseudonym if scoring_settings.adjudicator else None,
        "eligible_experts": len(eligible),
        "problems": problems,
    }


# ----------------------------------------------------------------------------- investigators: the style check

STYLE_CHECK_VERSION = 1           # part of the cache keys: raise it when normalize or style_check change
STYLE_CHECK_CACHE_SECONDS = 7 * 24 * 3600
# At most this many pairs (and drafts) go into the check: 300 test pairs put the accuracy within a few points, and
# the page stays quick on a large trial (normalizing is about a millisecond a report, the first time). The sample
# is the pairs with the smallest content hashes: stable as the trial grows (a new pair enters only if its hash is
# small enough), and unrelated to the arm or the case.
STYLE_CHECK_MAX_PAIRS = 600
PRESENTATIONS = {False: "as written (uniform layout)", True: "canonical wording and order"}


def _digest(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def _sample(values: list, limit: int) -> list:
    return sorted(values, key=_digest)[:limit]


def _shown_forms(*, trial: Trial, texts: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """digest of (findings, impression) → the text shown (as written, canonical), one statement per line.

    Normalizing takes about a millisecond a report, so the forms are kept in the cache (one entry per trial, a dict
    by text digest): a new report costs its own normalization only, not the whole trial's again."""
    key = f"scoring:style-check-texts:{STYLE_CHECK_VERSION}:{trial.pk}"
    known: dict[str, tuple[str, str]] = cache.get(key) or {}
    wanted = {_digest(t): t for t in texts}
    missing = {d: t for d, t in wanted.items() if d not in known}
    for digest, (findings, impression) in missing.items():
        normal = normalize_report(findings=findings, impression=impression)
        canonical = canonical_report(normal)
        known[digest] = (f"{normal.findings}\n{normal.impression}", f"{canonical.findings}\n{canonical.impression}")
    forms = {d: known[d] for d in wanted}
    if missing:
        cache.set(key, forms, STYLE_CHECK_CACHE_SECONDS)  # what is no longer wanted (a superseded text) goes
    return forms


def _accuracy(accuracy) -> dict:
    low, high = accuracy.confidence_interval
    return {"name": accuracy.name, "percent": 100 * accuracy.estimate, "low": 100 * low, "high": 100 * high,
            "n": accuracy.n}


def _style_result(result: StyleCheckResult, canonical: bool) -> dict:
    return {
        "presentation": PRESENTATIONS[canonical], "canonical": canonical, "enough": result.enough,
        "classifier": _accuracy(result.classifier) if result.enough else None,
        "baselines": [_accuracy(b) for b in result.baselines],
        "weights": [{"feature": name, "weight": weight} for name, weight in result.weights],
        "train": result.train, "test": result.test, "stock_phrases": result.stock_phrases,
        "stock_source": result.stock_source,
    }


def style_check(*, access: Access) -> dict:
    """The blinding-integrity check (scoring.style_check) for the investigator's conduct page: how well the text
    style of the trial's final report pairs (what experts are shown, or would be) names the arm, under the
    trial's presentation and under the other one, so that the presentation can be chosen before scoring starts.

    About the text style, not outcomes: nothing here says which report is better. Aggregates only (accuracies,
    model weights, one recurring sentence): no case, report or arm of anything. The result is cached per set of
    texts (and settings), so the page computes it again only when a report or a draft changed."""
    access.require(Role.INVESTIGATOR)
    trial = access.trial
    scoring_settings = settings_of(trial)
    base = {"design_has_pairs": trial.design != Design.CASE_RANDOMIZED, "canonical": scoring_settings.canonical_text,
            "items_exist": Item.objects.filter(trial=trial).exists(), "status": trial.status,
            "max_pairs": STYLE_CHECK_MAX_PAIRS}
    if not base["design_has_pairs"]:
        return {**base, "pairs": 0, "sampled": 0, "results": []}
    # Raw texts, the assisted report's first: what the result depends on, and so what its cache key is made of.
    raw = [tuple((u.reports[r.pk].findings, u.reports[r.pk].impression)
                 for r in sorted(u.reads, key=lambda read: read.arm != Arm.ASSISTED))
           for u in ready_units(trial) if len(u.reads) == 2]
    pairs_used = _sample(raw, STYLE_CHECK_MAX_PAIRS)
    drafts = _sample(list(ai_selectors.drafts_for_trial(access=access).filter(status=DraftStatus.READY)
                          .values_list("findings", "impression")), STYLE_CHECK_MAX_PAIRS)
    key = (f"scoring:style-check:{STYLE_CHECK_VERSION}:{trial.pk}:"
           f"{_digest((scoring_settings.canonical_text, pairs_used, drafts))}")
    cached = cache.get(key)
    if cached is None:
        forms = _shown_forms(trial=trial, texts=[t for pair in pairs_used for t in pair] + drafts)
        results = []
        for canonical in (scoring_settings.canonical_text, not scoring_settings.canonical_text):
            form = int(canonical)  # the forms are (as written, canonical)
            pairs = [ReportPair(assisted=forms[_digest(a)][form], standard=forms[_digest(b)][form])
                     for a, b in pairs_used]
            results.append(_style_result(run_style_check(pairs, drafts=[forms[_digest(d)][form] for d in drafts]),
                                         canonical))
        cached = {"pairs": len(raw), "sampled": len(pairs_used), "results": results, "min_pairs": MIN_PAIRS}
        cache.set(key, cached, STYLE_CHECK_CACHE_SECONDS)
    return {**base, **cached}


def backlog_section(*, access: Access) -> dict:
    """The scoring backlog for the investigator's conduct page: completion counts only (scoring.selectors.progress)."""
    done = progress(access=access)
    per_expert = [{"pseudonym": e["pseudonym"], "open": e["assigned"] - e["done"], "done": e["done"]}
                  for e in done["experts"]]
    return {"template": "scoring/conduct_backlog.html", "context": {
        "units_ready_not_built": done["units_ready_not_built"], "per_expert": per_expert,
        "open": sum(e["open"] for e in per_expert), "assigned": sum(e["assigned"] for e in done["experts"])}}


def conduct_section(*, access: Access) -> dict:
    """The scoring app's section of the investigator's conduct page (reading.events.conduct_sections)."""
    return {"template": "scoring/conduct_style_check.html", "context": style_check(access=access)}


def settings_for(*, access: Access) -> ScoringSettings:
    access.require(Role.INVESTIGATOR)
    return settings_of(access.trial)


def expert_by_pseudonym(*, access: Access, pseudonym: str) -> Membership | None:
    """One of the trial's experts by pseudonym (None if there is none), for the investigator naming the
    adjudicator."""
    access.require(Role.INVESTIGATOR)
    return access.trial.memberships.filter(pseudonym=pseudonym, role=Role.EXPERT).first()


def results_for(*, access: Access) -> dict[str, list[dict]]:
    """The scoring data set, for investigators and statisticians once the trial is unblinded."""
    access.require(Role.INVESTIGATOR, Role.STATISTICIAN)
    if access.trial.status != Status.UNBLINDED:
        raise PermissionDenied("Scoring results are available after unblinding; until then only completion is shown.")
    return analysis_rows(access.trial)


# ----------------------------------------------------------------------------- the analysis data set


def _latest_answers(model, assignments) -> dict[int, tuple]:
    """assignment id → (first version, latest version)."""
    out: dict[int, list] = {}
    for answer in model.objects.filter(assignment__in=assignments).order_by("assignment_id", "version"):
        out.setdefault(answer.assignment_id, [answer, answer])[1] = answer
    return {k: tuple(v) for k, v in out.items()}


def _times(assignment: Assignment, first) -> dict:
    seconds = (first.submitted_at - assignment.opened_at).total_seconds() if assignment.opened_at else None
    return {"opened_at": assignment.opened_at, "submitted_at": first.submitted_at, "seconds": seconds}


def analysis_rows(trial: Trial, *, include_superseded: bool = False) -> dict[str, list[dict]]:
    """The scoring data set, long format, one plain dict per answer (latest version; times of the first).

    NO PERMISSION CHECK: for the stats app only, after its own checks (role, lock, unblinding). Keys:
    - "quality": per report and expert: case, site, arm, reader, period, report id/version, expert,
      position, overall, sub_<key>, radpeer, comment, version, opened_at, submitted_at, seconds.
    - "preference": per pair and expert: case, site, reader_assisted, reader_standard, expert,
      assisted_side ("A" = left), left_arm, choice ("A", "B", "none"), preferred_arm, reason, times;
      ai_guess (the answer to "which report was written with AI assistance?": "A", "B", "unsure", or "" where
      the trial does not ask it) and guess_arm (the arm the expert named as assisted: "assisted" for a correct
      guess, "standard" for a wrong one; None for "unsure" or not asked), named by real arm like preferred_arm.
    - "finding_votes": per case, finding and expert: mark (present / absent / uncertain).
    - "reference_standard": per case and finding: present, method, vote counts, decided_by, decided_at.
    Superseded items (a report corrected after them) are left out unless `include_superseded`.
    """
    items = Item.objects.filter(trial=trial)
    if not include_superseded:
        items = items.filter(superseded_at__isnull=True)
    assignments = list(Assignment.objects.filter(item__in=items)
                       .select_related("item__case__site", "expert").order_by("item_id", "expert__pseudonym"))
    shown = defaultdict(list)
    for s in (ShownReport.objects.filter(item__in=items)
              .select_related("read__reader").order_by("id")):
        shown[s.item_id].append(s)
    positions = {}
    by_expert = defaultdict(list)
    for a in sorted(assignments, key=lambda a: (a.item.phase, a.order_key)):
        by_expert[a.expert_id].append(a)
    for expert_assignments in by_expert.values():
        for i, a in enumerate(expert_assignments):
            positions[a.pk] = i + 1
    answers = {kind: _latest_answers(model, assignments) for kind, model in ANSWER_MODEL.items()}
    rows: dict[str, list[dict]] = {"quality": [], "preference": [], "finding_votes": [], "reference_standard": []}
    for a in assignments:
        item = a.item
        pair = answers[item.kind].get(a.pk)
        if pair is None:
            continue
        first, last = pair
        base = {"trial": trial.code, "case": item.case.code, "site": item.case.site.code, "item": item.pk,
                "item_superseded": item.superseded_at is not None, "expert": a.expert.pseudonym,
                "position": positions[a.pk], "version": last.version, "corrected": last.version > 1,
                **_times(a, first)}
        if item.kind == ItemKind.QUALITY:
            s = shown[item.pk][0]
            rows["quality"].append({**base, "arm": s.arm, "reader": s.read.reader.pseudonym, "period": s.read.period,
                                    "read": s.read_id, "report": s.report_id, "report_version": s.report_version,
                                    "overall": last.overall, "radpeer": last.radpeer, "comment": last.comment,
                                    **{f"sub_{k}": v for k, v in last.subscores.items()}})
        elif item.kind == ItemKind.PAIR:
            by_arm = {s.arm: s for s in shown[item.pk]}
            left_arm = Arm.ASSISTED.value if a.assisted_side == Side.A else Arm.STANDARD.value
            right_arm = Arm.STANDARD.value if left_arm == Arm.ASSISTED.value else Arm.ASSISTED.value
            preferred = {Choice.A: left_arm, Choice.B: right_arm}.get(last.choice)
            guessed = {AiGuess.A: left_arm, AiGuess.B: right_arm}.get(last.ai_guess)
            rows["preference"].append({
                **base, "reader_assisted": by_arm[Arm.ASSISTED].read.reader.pseudonym,
                "reader_standard": by_arm[Arm.STANDARD].read.reader.pseudonym,
                "report_assisted": by_arm[Arm.ASSISTED].report_id, "report_standard": by_arm[Arm.STANDARD].report_id,
                "assisted_side": a.assisted_side, "left_arm": left_arm, "choice": last.choice,
                "preferred_arm": preferred, "reason": last.reason, "ai_guess": last.ai_guess, "guess_arm": guessed})
        else:
            for finding, mark in last.marks.items():
                rows["finding_votes"].append({**base, "finding": finding, "mark": mark})
    for ref in (ReferenceStandard.objects.filter(trial=trial).select_related("case__site", "decided_by")
                .order_by("case__code", "finding")):
        rows["reference_standard"].append({
            "trial": trial.code, "case": ref.case.code, "site": ref.case.site.code, "finding": ref.finding,
            "present": ref.present, "method": ref.method, "votes_present": ref.votes_present,
            "votes_absent": ref.votes_absent, "votes_uncertain": ref.votes_uncertain,
            "decided_by": ref.decided_by.pseudonym if ref.decided_by else None, "decided_at": ref.decided_at})
    return rows
