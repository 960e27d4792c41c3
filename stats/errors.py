"""Refusals of the stats app; each carries a message for the person who asked (see trial.errors)."""
from __future__ import annotations

from core.errors import Conflict, ServiceError, WrongStatus

__all__ = ["ServiceError", "Conflict", "WrongStatus", "PlanFrozen", "NoFrozenPlan", "InvalidPlan"]


class InvalidPlan(ServiceError):
    code = "invalid_plan"


class PlanFrozen(Conflict):
    code = "plan_frozen"


class NoFrozenPlan(Conflict):
    code = "no_frozen_plan"
