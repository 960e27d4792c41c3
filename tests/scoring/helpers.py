"""Small helpers of the scoring tests: an expert's assignments, and default answers by kind."""
from __future__ import annotations

from scoring import services
from scoring.models import Assignment


def mine(user, *, kind=None, case=None, trial=None):
    qs = Assignment.objects.filter(expert__user=user, item__superseded_at__isnull=True).select_related(
        "item__trial", "item__case", "expert").order_by("item__phase", "order_key")
    if kind:
        qs = qs.filter(item__kind=kind)
    if case is not None:
        qs = qs.filter(item__case=case)
    if trial is not None:
        qs = qs.filter(item__trial=trial)
    return list(qs)


def answer(assignment, user, **values):
    kind = assignment.item.kind
    if kind == "quality":
        return services.submit_quality_score(assignment=assignment, by=user,
                                             **({"overall": 4, "radpeer": "1"} | values))
    if kind == "pair":
        return services.submit_preference(assignment=assignment, by=user, **({"choice": "A"} | values))
    marks = {f: "absent" for f in assignment.item.trial.findings}
    return services.submit_findings(assignment=assignment, by=user, **({"marks": marks} | values))


def answer_before(assignment, user):
    """Answer the expert's earlier items of the same case (the order image → reports → pair)."""
    for earlier in mine(user, case=assignment.item.case):
        if earlier.item.phase < assignment.item.phase:
            answer(earlier, user)
