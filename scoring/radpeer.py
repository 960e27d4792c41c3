"""RADPEER (the ACR's peer-review scale) and its ordinal agreement score, in one place. Pure: the scoring app's
choices, the dataset's radpeer_score and the simulators all use this mapping."""
from __future__ import annotations

from typing import Final

# code → label, best first (1 concur … 3b major discrepancy, likely clinically significant)
LABELS: Final = {
    "1": "1: Concur with the interpretation",
    "2a": "2a: Discrepancy, understandable miss, unlikely clinically significant",
    "2b": "2b: Discrepancy, understandable miss, likely clinically significant",
    "3a": "3a: Discrepancy, should be made almost every time, unlikely clinically significant",
    "3b": "3b: Discrepancy, should be made almost every time, likely clinically significant",
}
CODES: Final = tuple(LABELS)

# RADPEER as an ordinal agreement score where higher is better (5 = concur … 1 = 3b), and back.
SCORE: Final = {code: 5 - i for i, code in enumerate(CODES)}
CODE_FOR_SCORE: Final = {score: code for code, score in SCORE.items()}
