"""Refusals of the scoring app (the base classes are core.errors')."""
from __future__ import annotations

from core.errors import Conflict, NotAllowed


class NotAssigned(NotAllowed):
    code = "not_assigned"


class AlreadyAnswered(Conflict):
    code = "already_answered"


class ReportChanged(Conflict):
    code = "report_changed"


class ItemSuperseded(Conflict):
    code = "item_superseded"


class NotAvailable(Conflict):
    code = "not_available"


class NotEnoughExperts(Conflict):
    code = "not_enough_experts"
