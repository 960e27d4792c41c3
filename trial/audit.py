"""The append-only, hash-chained audit log: `record` appends an event, `verify` walks the chain."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from .models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64


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
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


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
    """Append one event; call it inside the transaction of the write it describes (no savepoint of its own: if
    the append fails, the write fails with it). Three statements: lock the head, insert the event, move the
    head."""
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
        )
        event.hash = compute_hash(event)
        event.save()  # an INSERT only (AuditEvent.save refuses anything else)
        AuditHead.objects.filter(pk=1).update(last_hash=event.hash, count=event.pk)
    return event


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    events: int
    first_broken_id: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.intact:
            return f"Audit chain intact: {self.events} events verified."
        return f"Audit chain BROKEN at event {self.first_broken_id}: {self.reason}"


def verify() -> ChainReport:
    """Walk the whole chain in id order; name the first event whose link or content does not hold."""
    expected_prev = GENESIS_HASH
    expected_id = 1
    count = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.pk != expected_id:
            return ChainReport(False, count, expected_id, f"event {expected_id} is missing (next found: {event.pk}).")
        if event.prev_hash != expected_prev:
            return ChainReport(False, count, event.pk, "its previous-hash does not match the event before it.")
        if compute_hash(event) != event.hash:
            return ChainReport(False, count, event.pk, "its content does not match its hash (altered).")
        expected_prev = event.hash
        expected_id += 1
        count += 1
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.last_hash != expected_prev or head.count != count):
        return ChainReport(False, count, expected_id, "events after this point were removed (head mismatch).")
    return ChainReport(True, count)
