"""The findings a new trial asks about unless its investigator lists others (the paper's six critical findings).
Pure: the phantoms, the demo model and the simulators use the same list without importing Django."""
from __future__ import annotations

from typing import Final

DEFAULT_FINDINGS: Final = (
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "atelectasis",
    "cardiomegaly",
    "lung opacity",
)
