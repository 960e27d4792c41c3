"""The hooks the reading app offers the apps above it (which it must not import)."""
from __future__ import annotations

from django.dispatch import Signal

# The investigator's conduct page asks for sections from the apps above reading (scoring: the blinding-integrity
# check of the reports' style). Arguments: access. A receiver returns {"template", "context"} or None.
conduct_sections = Signal()

# A report became final (submitted, or signed where the trial asks for sign-off): the case's unit may be ready for
# scoring. Sent once the transaction commits (trial.events.announce). Arguments: trial_id, case_id.
reports_final = Signal()
