"""The append-only audit log: a keyed hash chain of events, each with a keyed hash of the record it wrote, anchored
outside the database. `record` appends, `verify` checks the chain, the live records and the anchor, `anchor_head`
writes the head to the anchor file (and is what an analysis run records).

What each part catches (docs/security.md, "The audit trail"):
- an edited or deleted event: the chain (HMAC-SHA256 with settings.AUDIT_KEY, which is not in the database);
- an edited record (a report's text, a score, a preference, an allocation's arm, an AI draft's text): its state
  hash, re-computed from the live row and compared with the latest event that wrote it (upper apps register the
  fields of their models in AppConfig.ready(): `register_state`);
- a chain re-hashed or cut short (its newest events deleted and the head row moved back): the anchor file, to
  which the head (count, hash) is appended after every commit that wrote events, outside the database's reach.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.utils import timezone

from core import db

from .models import AuditEvent, AuditHead

logger = logging.getLogger(__name__)
anchor_logger = logging.getLogger("trial.audit.anchor")  # one line per anchor: ship it to a remote log as well

GENESIS_HASH = "0" * 64
SCHEME_SHA256 = "sha256"        # the events written before the chain was keyed: still verified, never written
SCHEME_HMAC = "hmac-sha256"     # every new event
SCHEMES = (SCHEME_SHA256, SCHEME_HMAC)

# Payload keys that hold outcome values (or the arm) in events written before outcome values left the payloads;
# the audit page hides them until the trial is unblinded (selectors.audit_events_for).
OUTCOME_KEYS = frozenset({"wall_seconds", "active_seconds", "arm", "overall", "subscores", "radpeer", "comment",
                          "choice", "ai_guess", "marks", "findings", "impression", "text", "finding_flags",
                          "finding_scores", "present"})


# ------------------------------------------------------------------------------------------ keys


def _key() -> bytes:
    key = getattr(settings, "AUDIT_KEY", "")
    if not key:
        raise ImproperlyConfigured("The audit log needs a key: set CXR_AUDIT_KEY or CXR_AUDIT_KEY_FILE.")
    return key.encode() if isinstance(key, str) else bytes(key)


def _subkey(purpose: bytes) -> bytes:
    # One key from the environment, a separate key per use: a hash of one kind can never stand for another kind.
    return hmac.new(_key(), b"cxr-trial audit " + purpose, hashlib.sha256).digest()


def _mac(purpose: bytes, message: bytes) -> str:
    return hmac.new(_subkey(purpose), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------------------------ record states


@dataclass(frozen=True)
class StateSpec:
    """The fields of a model whose state each audit event about one of its rows is bound to."""

    label: str                          # "reading.Report"
    fields: tuple[str, ...]             # values() lookups; a lookup across a relation ("read__wall_seconds") is fine
    trial: str = "trial_id"             # the lookup of the row's trial, for the alert
    append_only: bool = False           # the application's database role may not UPDATE / DELETE it (grant_app_role)
    updatable: tuple[str, ...] = ()     # columns it may still UPDATE (a report's sign-off)


_STATES: dict[str, StateSpec] = {}


def register_state(label: str, *, fields: Iterable[str], trial: str = "trial_id", append_only: bool = False,
                   updatable: Iterable[str] = ()) -> StateSpec:
    """Bind the audit events of a model's rows to these fields (each app calls it for its models in ready()): from
    now on `record(obj=row)` stores the keyed hash of the row's fields as written, and `verify` re-hashes every row
    against its latest event. Idempotent (ready() may run twice)."""
    spec = StateSpec(label=label, fields=tuple(fields), trial=trial, append_only=append_only,
                     updatable=tuple(updatable))
    _STATES[label] = spec
    return spec


def registered_states() -> tuple[StateSpec, ...]:
    return tuple(_STATES.values())


def _plain(value: Any) -> Any:
    """Values as the database gives them back, in one text form whatever the database (an aware time in UTC)."""
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = value.astimezone(UTC)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def _state_digest(label: str, pk: Any, values: dict[str, Any]) -> str:
    body = {"model": label, "pk": str(pk), "fields": {name: _plain(values[name]) for name in values}}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    # Keyed: a plain hash of a preference ("A", "B" or "none") or a score (1-5) is undone by trying every value.
    return _mac(b"state", text.encode())


def state_hash(obj: models.Model) -> str:
    """The keyed hash of a registered row's fields as they are in the database now ("" for an unregistered model).
    Read back from the database, inside the caller's transaction, so that what is hashed is what verify will see."""
    spec = _STATES.get(obj._meta.label)
    if spec is None or obj.pk is None:
        return ""
    values = type(obj)._base_manager.filter(pk=obj.pk).values(*spec.fields).get()
    return _state_digest(spec.label, obj.pk, values)


# ------------------------------------------------------------------------------------------ the chain


def _canonical(event: AuditEvent) -> bytes:
    # Every field that matters is in the hashed text, in a fixed order, so that changing any of them
    # (or the order of events) breaks the chain.
    body = {
        "id": event.pk,
        "trial": event.trial_id,
        "actor": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "payload": event.payload,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "prev_hash": event.prev_hash,
    }
    if event.scheme != SCHEME_SHA256:  # the text of the first events stays exactly what was hashed then
        body["scheme"] = event.scheme
        body["state_hash"] = event.state_hash
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    if event.scheme == SCHEME_SHA256:
        return hashlib.sha256(_canonical(event)).hexdigest()
    if event.scheme == SCHEME_HMAC:
        return _mac(b"chain", _canonical(event))
    raise ValueError(f"unknown audit hash scheme {event.scheme!r}")


def _jsonable(payload: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON now, so that what is hashed is exactly what the database will return.
    return json.loads(json.dumps(payload, sort_keys=True, default=str))


def _locked_head() -> AuditHead:
    """The head row under its lock (which serializes appends, so the chain never forks; on SQLite the write lock
    is the database's)."""
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:
        return head
    # a flushed test database (migration 0002 creates the row); as before, ids go on from the last event
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    head, _ = AuditHead.objects.select_for_update().get_or_create(
        pk=1, defaults={"last_hash": GENESIS_HASH, "count": last})
    return head


def record(*, actor, action: str, obj: models.Model | None = None, trial=None,
           payload: dict | None = None) -> AuditEvent:
    """Append one event; call it inside the transaction of the write it describes, after the write (no savepoint of
    its own: if the append fails, the write fails with it). If `obj` is of a registered model, the event carries the
    keyed hash of its state as written. Payloads carry ids, versions and hashes, never outcome values (a time, a
    score, a choice, report or draft text): the audit page is the investigators', who are blinded to outcomes."""
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        if trial is None and obj is not None:
            trial = obj if obj._meta.label == "trial.Trial" else getattr(obj, "trial", None)
        event = AuditEvent(
            id=head.count + 1,  # ids are assigned under the head lock, so they are gap-free and in chain order
            trial=trial,
            actor=actor if getattr(actor, "pk", None) else None,
            actor_name=getattr(actor, "username", "") or "system",
            action=action,
            object_type=obj._meta.label if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            payload=_jsonable(payload or {}),
            created_at=timezone.now(),  # the real time, never a simulated clock (core.clock)
            prev_hash=head.last_hash,
            scheme=SCHEME_HMAC,
            state_hash=state_hash(obj) if obj is not None else "",
        )
        event.hash = compute_hash(event)
        event.save()  # an INSERT only (AuditEvent.save refuses anything else)
        AuditHead.objects.filter(pk=1).update(last_hash=event.hash, count=event.pk)
    if getattr(settings, "AUDIT_ANCHOR_ON_COMMIT", True):
        _anchor_after_commit()
    return event


# ------------------------------------------------------------------------------------------ the anchor


@dataclass(frozen=True)
class AnchoredHead:
    """The chain's head as written to the anchor file: `count` events, the last one's `hash`, at `at` (UTC)."""

    count: int
    hash: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "hash": self.hash, "at": self.at.isoformat(timespec="microseconds")}


def anchor_path() -> Path:
    """settings.AUDIT_ANCHOR_FILE, or a file per database under VAR_DIR (a test database never mixes its anchors
    with the development database's)."""
    configured = getattr(settings, "AUDIT_ANCHOR_FILE", "")
    if configured:
        return Path(configured)
    name = Path(db.database_name()).stem
    return Path(settings.VAR_DIR) / f"audit-anchor-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:80]}.jsonl"


def _anchor_line(head: AnchoredHead) -> str:
    body = head.as_dict()
    # Keyed too: someone who can write the file but has not the key cannot add a head that matches a forged chain.
    body["mac"] = _mac(b"anchor", f"{head.count}:{head.hash}:{body['at']}".encode())
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _append(head: AnchoredHead) -> None:
    path = anchor_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (_anchor_line(head) + "\n").encode()
    # O_APPEND: one write() per line, so lines of concurrent processes never interleave; never truncated or
    # rewritten from here (an operating-system append-only flag, `chattr +a`, makes that hold for everyone).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    anchor_logger.info("audit head %s", head.as_dict())


def current_head() -> AnchoredHead:
    """The chain's head as the caller's transaction sees it (count 0 and the genesis hash before any event)."""
    row = AuditHead.objects.filter(pk=1).values_list("count", "last_hash").first()
    return AnchoredHead(count=row[0] if row else 0, hash=row[1] if row else GENESIS_HASH, at=timezone.now())


def _anchor_committed_head() -> None:
    head = current_head()  # after the commit: a head that exists for good (a rolled-back one is never anchored)
    if head.count:
        _append(head)


def _anchor_after_commit() -> None:
    # One anchor per transaction that wrote events, however many it wrote: skip if already asked for (a rolled-back
    # savepoint takes its callbacks with it, so a later event asks again).
    if db.on_commit_pending(_anchor_committed_head):
        return
    transaction.on_commit(_anchor_committed_head, robust=True)


def anchor_head() -> AnchoredHead:
    """Write the chain's head (event count, last hash, time) to the anchor file and return it, as a small frozen
    result (`as_dict()` for JSON). The stats app records it in every analysis run and report, so that each result
    names the exact audit trail it was computed beside. Inside a transaction the line is written when it commits
    (never for a head that is rolled back); the returned head is the one the caller's transaction sees."""
    head = current_head()
    if head.count:
        transaction.on_commit(lambda: _append(head), robust=True)
    return head


@dataclass(frozen=True)
class _Anchor:
    line: int
    count: int
    hash: str
    at: str


def _read_anchors() -> tuple[list[_Anchor], list[str]]:
    """The anchor file's heads, and its problems (a line that is not JSON or whose MAC does not hold)."""
    path = anchor_path()
    anchors: list[_Anchor] = []
    problems: list[str] = []
    if not path.exists():
        return anchors, problems
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                body = json.loads(text)
                anchor = _Anchor(number, int(body["count"]), str(body["hash"]), str(body["at"]))
                expected = _mac(b"anchor", f"{anchor.count}:{anchor.hash}:{anchor.at}".encode())
                genuine = hmac.compare_digest(expected, str(body.get("mac", "")))
            except (ValueError, KeyError, TypeError):
                problems.append(f"anchor file line {number} is not an anchor.")
                continue
            if not genuine:
                problems.append(f"anchor file line {number} was not written with the audit key (forged or altered).")
                continue
            anchors.append(anchor)
    return anchors, problems


# ------------------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class RowProblem:
    """A registered row whose live state is not the one its latest audit event recorded (or that has no event)."""

    model: str
    pk: str
    trial_id: int | None
    event_id: int | None      # the latest event that wrote it; None: no event at all
    reason: str

    def __str__(self) -> str:
        where = f" (trial {self.trial_id})" if self.trial_id is not None else ""
        return f"{self.model} {self.pk}{where}: {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    """What verify found: the chain (`first_broken_id`, `reason`), the rows (`rows`), the anchor (`anchors`)."""

    intact: bool
    events: int
    first_broken_id: int | None = None
    reason: str = ""
    rows: tuple[RowProblem, ...] = ()
    rows_checked: int = 0
    anchors: int = 0                       # anchor lines checked against the chain
    anchor_problems: tuple[str, ...] = ()
    chain_trial_ids: frozenset[int] = field(default_factory=frozenset)  # trials of the broken events, if known

    @property
    def chain_intact(self) -> bool:
        return self.first_broken_id is None and not self.anchor_problems

    @property
    def affected_trial_ids(self) -> frozenset[int] | None:
        """The trials a failure touches; None when it cannot be told (a missing event, a cut chain): all of them."""
        if self.intact:
            return frozenset()
        if not self.chain_intact and not self.chain_trial_ids:
            return None
        ids = set(self.chain_trial_ids)
        for row in self.rows:
            if row.trial_id is None:
                return None
            ids.add(row.trial_id)
        return frozenset(ids)

    def lines(self) -> list[str]:
        if self.intact:
            anchored = f", against {self.anchors} anchors" if self.anchors else ", NOT ANCHORED yet (no anchor file)"
            return [f"Audit chain intact: {self.events} events verified{anchored}; "
                    f"{self.rows_checked} records match their latest events."]
        out = []
        if self.first_broken_id is not None:
            out.append(f"Audit chain BROKEN at event {self.first_broken_id}: {self.reason}")
        out += [f"Audit anchor: {problem}" for problem in self.anchor_problems]
        if self.rows:
            out.append(f"{len(self.rows)} record(s) differ from the audit log:")
            out += [f"  {row}" for row in self.rows]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _walk(anchored: dict[int, list[_Anchor]]) -> tuple[int, int | None, str, int | None, dict[int, str]]:
    """The chain up to the head: (events, first broken id, reason, its trial, hashes of the anchored counts)."""
    head = AuditHead.objects.filter(pk=1).values_list("count", "last_hash").first()
    expected_prev, expected_id, count, seen_hmac = GENESIS_HASH, 1, 0, False
    at_anchors: dict[int, str] = {}
    events = AuditEvent.objects.order_by("id")
    if head is not None:
        events = events.filter(id__lte=head[0])  # events appended after the head was read are for the next run
    for event in events.iterator(chunk_size=2000):
        if event.pk != expected_id:
            return count, expected_id, f"event {expected_id} is missing (next found: {event.pk}).", None, at_anchors
        if event.scheme not in SCHEMES:
            return count, event.pk, f"its hash scheme {event.scheme!r} is unknown.", event.trial_id, at_anchors
        if seen_hmac and event.scheme == SCHEME_SHA256:
            return (count, event.pk, "it is hashed without the key after keyed events (re-hashed).", event.trial_id,
                    at_anchors)
        if event.prev_hash != expected_prev:
            return (count, event.pk, "its previous-hash does not match the event before it.", event.trial_id,
                    at_anchors)
        if not hmac.compare_digest(compute_hash(event), event.hash):
            return count, event.pk, "its content does not match its hash (altered).", event.trial_id, at_anchors
        seen_hmac = seen_hmac or event.scheme == SCHEME_HMAC
        if event.pk in anchored:
            at_anchors[event.pk] = event.hash
        expected_prev = event.hash
        expected_id += 1
        count += 1
    if head is not None and (head[1] != expected_prev or head[0] != count):
        return count, expected_id, "events after this point were removed (head mismatch).", None, at_anchors
    return count, None, "", None, at_anchors


def _check_anchors(anchored: dict[int, list[_Anchor]], at_anchors: dict[int, str], events: int,
                   broken: bool) -> list[str]:
    problems = []
    for count in sorted(anchored):
        anchor = anchored[count][0]
        if count > events and not broken:
            problems.append(f"the chain has {events} events, but {count} were anchored at {anchor.at} (line "
                            f"{anchor.line}): its newest events were removed (truncated).")
        elif count in at_anchors and not hmac.compare_digest(at_anchors[count], anchor.hash):
            problems.append(f"event {count} is not the one anchored at {anchor.at} (line {anchor.line}): the chain "
                            "was re-hashed.")
        if len(problems) >= 20:
            problems.append("… (more anchor mismatches not listed)")
            break
    return problems


def _check_rows() -> tuple[list[RowProblem], int]:
    """Every row of every registered model against the state hash of the latest event that wrote it."""
    if not _STATES:
        return [], 0
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    events = (AuditEvent.objects.filter(object_type__in=list(_STATES)).exclude(state_hash="")
              .order_by("id").values_list("id", "object_type", "object_id", "state_hash"))
    for event_id, object_type, object_id, digest in events.iterator(chunk_size=5000):
        latest[(object_type, object_id)] = (event_id, digest)
    problems: list[RowProblem] = []
    checked = 0
    for spec in _STATES.values():
        model = apps.get_model(spec.label)
        rows = model._base_manager.order_by("pk").values("pk", spec.trial, *spec.fields)
        for row in rows.iterator(chunk_size=2000):
            checked += 1
            pk = str(row["pk"])
            found = latest.get((spec.label, pk))
            if found is None:
                problems.append(RowProblem(spec.label, pk, row[spec.trial], None,
                                           "no audit event recorded its state (written past the services)."))
                continue
            digest = _state_digest(spec.label, row["pk"], {name: row[name] for name in spec.fields})
            if not hmac.compare_digest(digest, found[1]):
                problems.append(RowProblem(spec.label, pk, row[spec.trial], found[0],
                                           f"its content differs from what audit event {found[0]} recorded "
                                           "(edited in the database)."))
    return problems, checked


def verify() -> ChainReport:
    """Check the whole audit trail: the chain link by link (the first broken link is named), the chain against its
    anchors (re-hashed or truncated), and every registered record against its latest event (every row that differs
    is named). Writes nothing (anchoring a verified head is the caller's choice: `anchor_head`)."""
    # The anchors first: each was written after its events committed, so the view taken next contains them all.
    anchors, anchor_problems = _read_anchors()
    anchored: dict[int, list[_Anchor]] = {}
    for anchor in anchors:
        anchored.setdefault(anchor.count, []).append(anchor)
    with db.snapshot():
        events, broken_id, reason, broken_trial, at_anchors = _walk(anchored)
        anchor_problems += _check_anchors(anchored, at_anchors, events, broken_id is not None)
        rows, checked = _check_rows()
    intact = broken_id is None and not anchor_problems and not rows
    return ChainReport(intact=intact, events=events, first_broken_id=broken_id, reason=reason, rows=tuple(rows),
                       rows_checked=checked, anchors=len(anchors), anchor_problems=tuple(anchor_problems),
                       chain_trial_ids=frozenset({broken_trial} if broken_trial else ()))


def note_verification(report: ChainReport) -> None:
    """Keep the outcome of a verification on the head row, for the notice on the investigators' pages."""
    AuditHead.objects.filter(pk=1).update(verified_at=timezone.now(), verified_intact=report.intact,
                                          verified_summary=str(report)[:20000])


def last_verification() -> dict[str, Any] | None:
    row = AuditHead.objects.filter(pk=1).values("verified_at", "verified_intact", "verified_summary").first()
    if row is None or row["verified_at"] is None:
        return None
    return {"at": row["verified_at"], "intact": row["verified_intact"], "summary": row["verified_summary"]}


def baseline_states(*, actor=None) -> int:
    """Record the current state of every registered row that no event has recorded yet (a deployment upgraded from
    before state hashes): one "audit.state_baseline" event each. It proves nothing about the past, only from now
    on; the event says so. The number of rows recorded."""
    latest = set(AuditEvent.objects.filter(object_type__in=list(_STATES)).exclude(state_hash="")
                 .values_list("object_type", "object_id").distinct())
    recorded = 0
    for spec in _STATES.values():
        model = apps.get_model(spec.label)
        for obj in model._base_manager.order_by("pk").iterator(chunk_size=500):
            if (spec.label, str(obj.pk)) in latest:
                continue
            trial_id = model._base_manager.filter(pk=obj.pk).values_list(spec.trial, flat=True).get()
            with transaction.atomic():
                record(actor=actor, action="audit.state_baseline", obj=obj,
                       trial=apps.get_model("trial.Trial").objects.filter(pk=trial_id).first(),
                       payload={"note": "state recorded when content hashes were introduced; not verified before"})
            recorded += 1
    return recorded


# ------------------------------------------------------------------------------------------ the nightly run


def verify_and_alert(*, alert: bool = True, anchor: bool = True) -> ChainReport:
    """Verify; keep the outcome for the investigators' notice; anchor an intact head (a broken one is never
    anchored: that would bless it); on a failure, log it and e-mail the investigators of the trials it touches."""
    report = verify()
    note_verification(report)
    if report.intact:
        if anchor:
            anchor_head()
        return report
    logger.error("%s", report)
    if alert:
        alert_investigators(report)
    return report


def alert_investigators(report: ChainReport) -> int:
    """One e-mail to each investigator of the trials the failure touches (every trial's, when that cannot be told).
    The message names the problems (models, ids, event numbers), never a record's content. The number sent."""
    from django.core.mail import send_mail

    from .models import Membership, Role

    trial_ids = report.affected_trial_ids
    members = Membership.objects.filter(role=Role.INVESTIGATOR).select_related("user", "trial")
    if trial_ids is not None:
        members = members.filter(trial_id__in=trial_ids)
    by_email: dict[str, set[str]] = {}
    trials_of: dict[str, set[int]] = {}
    for membership in members:
        if membership.user.email and membership.user.is_active:
            by_email.setdefault(membership.user.email, set()).add(membership.trial.code)
            trials_of.setdefault(membership.user.email, set()).add(membership.trial_id)
    for email, codes in sorted(by_email.items()):
        # The chain's and the anchor's problems, and the rows of the recipient's own trials only.
        own = ChainReport(intact=False, events=report.events, first_broken_id=report.first_broken_id,
                          reason=report.reason, anchor_problems=report.anchor_problems,
                          rows=tuple(row for row in report.rows if row.trial_id in trials_of[email]))
        send_mail(
            subject="[CXR-Trial] The audit trail FAILED its verification",
            message=(f"The nightly verification of the audit trail failed. Trials concerned: {', '.join(sorted(codes))}"
                     f"{' (the failure cannot be tied to one trial)' if trial_ids is None else ''}.\n\n"
                     "Data or audit events were changed outside the application (or the anchor file was). Do not "
                     "lock, unblind or analyse until this is explained; run `manage.py verify_audit` for the full "
                     f"list.\n\n{own}\n"),
            from_email=None, recipient_list=[email], fail_silently=False)
    return len(by_email)
