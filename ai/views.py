"""The AI drafts page of a trial: which model, each case's draft state, retry and backfill."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import ServiceError
from trial.access import access_for
from trial.models import Role

from . import selectors, services
from .forms import AssignModelForm


def _investigator(request, code):
    return access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])


@login_required
def drafts_page(request, code):
    access = _investigator(request, code)
    model = selectors.trial_model(trial=access.trial)
    form = AssignModelForm(initial={"model_version": model})
    form.fields["model_version"].queryset = selectors.models_for_investigator(access=access)
    return render(request, "ai/drafts.html", {
        "trial": access.trial, "model": model, "form": form,
        "drafts": selectors.drafts_for_trial(access=access),
        "progress": selectors.draft_progress(access=access),
    })


@login_required
@require_POST
def assign_model(request, code):
    access = _investigator(request, code)
    form = AssignModelForm(request.POST)
    form.fields["model_version"].queryset = selectors.models_for_investigator(access=access)
    if form.is_valid():
        try:
            services.assign_model(trial=access.trial, by=request.user, model_version=form.cleaned_data["model_version"])
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"The trial's drafts will come from {form.cleaned_data['model_version']}.")
    return redirect("ai:drafts", access.trial.code)


@login_required
@require_POST
def backfill(request, code):
    access = _investigator(request, code)
    try:
        requested = services.backfill(trial=access.trial, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{len(requested)} drafts requested.")
    return redirect("ai:drafts", access.trial.code)


@login_required
@require_POST
def retry(request, code, draft_id):
    access = _investigator(request, code)
    draft = selectors.draft_for_trial(access=access, draft_id=draft_id)
    if draft is None:
        raise Http404("No such draft in this trial.")
    try:
        services.retry_draft(draft=draft, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Draft of {draft.case.code} sent back to the queue.")
    return redirect("ai:drafts", access.trial.code)
