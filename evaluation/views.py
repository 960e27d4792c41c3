"""The retrospective evaluation of a model's drafts: a page and its CSV, for analysts once the trial is unblinded."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from stats.selectors import ANALYSTS
from trial.access import access_for

from . import selectors
from . import table as evaluation


@login_required
def page(request, code):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    try:
        models = selectors.evaluable_models(access=access)
    except selectors.NotUnblinded as exc:
        return render(request, "evaluation/evaluation.html", {"trial": trial, "refusal": str(exc)}, status=403)
    model = selectors.model_for(access=access, name=request.GET.get("model"))
    table = selectors.evaluation_for(access=access, model=model) if model else None
    return render(request, "evaluation/evaluation.html",
                  {"trial": trial, "model": model, "table": table, "models": models})


@login_required
def export(request, code):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    try:
        model = selectors.model_for(access=access, name=request.GET.get("model"))
    except selectors.NotUnblinded as exc:
        return HttpResponse(str(exc), status=403, content_type="text/plain; charset=utf-8")
    if model is None:
        return HttpResponse("No model version has a ready draft in this trial.", status=404,
                            content_type="text/plain; charset=utf-8")
    table = selectors.evaluation_for(access=access, model=model)
    response = HttpResponse(evaluation.to_csv(table), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.code}-ai-evaluation-{model.name}.csv"'
    return response
