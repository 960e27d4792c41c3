"""The domain events the trial app announces, sent once the transaction that caused them commits.

Upper apps subscribe in their AppConfig.ready() (ai drafts an enrolled case, reading routes the cases when reading
starts, scoring builds its items when scoring starts), as django.contrib.auth declares user_logged_in and connects
update_last_login. trial imports none of them. Model signals (post_save and kin) are not used: they hide who writes.
"""
from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# A case was enrolled (validated, de-identified, stored). Arguments: case_id.
case_enrolled = Signal()

# A trial moved from one status to another. Arguments: trial_id, status (the new one), previous.
trial_status_changed = Signal()


def announce(signal: Signal, **arguments) -> None:
    """Send `signal` with `arguments` once the current transaction commits (at once outside one); nothing is sent
    for a write that rolls back. Receivers run in the sender's process: they enqueue a task or make a small,
    idempotent write."""
    transaction.on_commit(lambda: signal.send(sender=__name__, **arguments))
