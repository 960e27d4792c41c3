"""The domain events the trial app announces, sent once the transaction that caused them commits.

Upper apps subscribe in their AppConfig.ready() (ai drafts an enrolled case, reading routes the cases when reading
starts, scoring builds its items when scoring starts), as django.contrib.auth declares user_logged_in and connects
update_last_login. trial imports none of them. Model signals (post_save and kin) are not used: they hide who writes.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# A case was enrolled (validated, de-identified, stored). Arguments: case_id.
case_enrolled = Signal()

# An image joined an enrolled case (a lateral or a repeat of its study, also one staged before the frontal film).
# Arguments: case_id, image_id.
case_image_added = Signal()

# A trial moved from one status to another. Arguments: trial_id, status (the new one), previous.
trial_status_changed = Signal()

# Readers of a running trial changed: one joined or came on duty (cases waiting for a reader may go to them).
# Arguments: trial_id.
readers_changed = Signal()

# A reader was withdrawn: their open reads go to another reader of the same arm and site. Arguments: trial_id,
# membership_id.
reader_withdrawn = Signal()

# A case was withdrawn: its open reads are closed (read no further). Arguments: trial_id, case_id.
case_withdrawn = Signal()


def announce(signal: Signal, **arguments) -> None:
    """Send `signal` with `arguments` once the current transaction commits (at once outside one); nothing is sent
    for a write that rolls back. Receivers run in the sender's process: they enqueue a task or make a small,
    idempotent write. A receiver that fails is logged and the others still run: what was announced has committed
    and stays (the periodic tasks and the investigators' pages catch what a failed receiver left undone)."""
    def send() -> None:
        for receiver, result in signal.send_robust(sender=__name__, **arguments):
            if isinstance(result, Exception):
                logger.error("receiver %r of %s failed", receiver, arguments, exc_info=result)

    transaction.on_commit(send, robust=True)
