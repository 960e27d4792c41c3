"""The AI drafts page of a trial: which model, each case's draft state, retry and backfill."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.errors import ServiceError
from trial import selectors as trial_selectors
from trial.models import Role

from . import selectors, services
from .forms import AssignModelForm


@login_required
def drafts_page(request, code):
    trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.INVESTIGATOR])
    model = selectors.trial_model(trial=trial)
    form = AssignModelForm(initial={"model_version": model})
    form.fields["model_version"].queryset = selectors.models_for_investigator(trial=trial, user=request.user)
    return render(request, "ai/drafts.html", {
        "trial": trial, "model": model, "form": form,
        "drafts": selectors.drafts_for_trial(trial=trial, user=request.user),
        "progress": selectors.draft_progress(trial=trial, user=request.user),
    })


@login_required
@require_POST
def assign_model(request, code):
    trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.INVESTIGATOR])
    form = AssignModelForm(request.POST)
    form.fields["model_version"].queryset = selectors.models_for_investigator(trial=trial, user=request.user)
    if form.is_valid():
        try:
            services.assign_model(trial=trial, by=request.user, model_version=form.cleaned_data["model_version"])
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"The trial's drafts will come from {form.cleaned_data['model_version']}.")
    return redirect("ai:drafts", trial.code)


@login_required
@require_POST
def backfill(request, code):
    trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.INVESTIGATOR])
    try:
        requested = services.backfill(trial=trial, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{len(requested)} drafts requested.")
    return redirect("ai:drafts", trial.code)


@login_required
@require_POST
def retry(request, code, draft_id):
    trial = trial_selectors.trial_for_user(code=code, user=request.user, roles=[Role.INVESTIGATOR])
    draft = get_object_or_404(selectors.drafts_for_trial(trial=trial, user=request.user), pk=draft_id)
    try:
        services.retry_draft(draft=draft, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Draft of {draft.case.code} sent back to the queue.")
    return redirect("ai:drafts", trial.code)
