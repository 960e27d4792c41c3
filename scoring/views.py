"""Expert, adjudicator and investigator pages of the scoring app: thin; selectors read, services write."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import ServiceError
from trial.access import access_for
from trial.models import Role

from . import selectors, services
from .forms import AdjudicationForm, FindingsForm, PreferenceForm, QualityForm, SettingsForm
from .models import ItemKind


def _image(field_file):
    response = FileResponse(field_file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response.headers.pop("Content-Disposition", None)  # no file name: it is the same for every item anyway
    return response


def _form_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _access(request, code, role):
    return access_for(user=request.user, code=code, roles=[role])


# ------------------------------------------------------------------------------------- experts


@login_required
def worklist_page(request, code):
    access = _access(request, code, Role.EXPERT)
    wl = selectors.worklist(access=access)
    return render(request, "scoring/worklist.html", {
        "trial": access.trial, "rows": wl.rows, "progress": {"done": wl.done, "total": wl.total},
        "resume": wl.resume, "is_adjudicator": selectors.is_adjudicator(access=access),
    })


def _item_form(view, data=None, correcting=False):
    kwargs = {"correcting": correcting}
    if view["kind"] == ItemKind.QUALITY:
        return QualityForm(data, scale=view["scale"], **kwargs)
    if view["kind"] == ItemKind.PAIR:
        return PreferenceForm(data, scale=view["scale"], **kwargs)
    return FindingsForm(data, findings=view["findings"], **kwargs)


def _submit(form, assignment, user) -> None:
    kind, reason = assignment.item.kind, form.reason()
    if kind == ItemKind.QUALITY:
        services.submit_quality_score(assignment=assignment, by=user, reason=reason, **form.values())
    elif kind == ItemKind.PAIR:
        services.submit_preference(assignment=assignment, by=user, reason=reason, **form.values())
    else:
        services.submit_findings(assignment=assignment, by=user, marks=form.marks(), reason=reason)


@login_required
def item_page(request, code, key):
    """The item and its answer form. A GET changes nothing: the page's script opens the item (a POST to the API,
    open_url) as the page runs, which starts the time spent on it."""
    access = _access(request, code, Role.EXPERT)
    trial = access.trial
    assignment = selectors.assignment_for_expert(access=access, key=key)
    view = selectors.item_view(assignment=assignment)
    correcting = request.POST.get("action") == "correct"
    form = _item_form(view, request.POST if request.method == "POST" else None, correcting=correcting)
    if request.method == "POST" and form.is_valid():
        try:
            _submit(form, assignment, request.user)
        except ServiceError as exc:
            _form_error(form, exc)
            view = selectors.item_view(assignment=assignment)  # a changed report may have rebuilt the item
        else:
            messages.success(request, "Correction saved." if correcting else "Saved.")
            view = selectors.item_view(assignment=assignment)
            if view["next_key"] and not correcting:
                return redirect("scoring:item", trial.code, view["next_key"])
            return redirect("scoring:item", trial.code, key) if correcting else redirect("scoring:worklist", trial.code)
    correction_form = _item_form(view, correcting=True) if view["answer"] and not correcting else None
    return render(request, "scoring/item.html", {
        "trial": trial, "item": view, "form": form, "correcting": correcting, "correction_form": correction_form,
        "worklist_url": reverse("scoring:worklist", args=[trial.code]),
        "open_url": reverse("api-scoring-item-open", args=[key]) if selectors.opens(view) else None,
    })


@login_required
def item_image(request, code, key, kind, position=1):
    """An image of the item's study, by its position in the case (1, the primary, also at the URL without one)."""
    return _image(selectors.image_for_expert(access=_access(request, code, Role.EXPERT), key=key, kind=kind,
                                             position=position))


# ------------------------------------------------------------------------------------- adjudicator


@login_required
def adjudication_page(request, code):
    access = _access(request, code, Role.EXPERT)
    return render(request, "scoring/adjudication.html", {
        "trial": access.trial, "queue": selectors.adjudication_queue(access=access)})


@login_required
def adjudicate_page(request, code, key):
    access = _access(request, code, Role.EXPERT)
    trial = access.trial
    item = selectors.adjudication_item(access=access, key=key)
    view = selectors.adjudication_view(item=item)
    form = AdjudicationForm(request.POST or None, findings=view["findings"])
    if request.method == "POST" and form.is_valid():
        try:
            services.adjudicate(item=item, by=request.user, decisions=form.decisions(),
                                reason=form.cleaned_data["reason"])
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Decision saved.")
            return redirect("scoring:adjudication", trial.code)
    return render(request, "scoring/adjudicate.html", {"trial": trial, "view": view, "form": form})


@login_required
def adjudication_image(request, code, key, kind, position=1):
    return _image(selectors.adjudication_image(access=_access(request, code, Role.EXPERT), key=key, kind=kind,
                                               position=position))


# ------------------------------------------------------------------------------------- investigators


@login_required
def progress_page(request, code):
    access = _access(request, code, Role.INVESTIGATOR)
    return render(request, "scoring/progress.html",
                  {"trial": access.trial, "progress": selectors.progress(access=access)})


@login_required
@require_POST
def build_now(request, code):
    trial = _access(request, code, Role.INVESTIGATOR).trial
    try:
        result = services.build_items(trial=trial, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        superseded = f", {result.superseded} superseded (a report was corrected)." if result.superseded else "."
        messages.success(request, f"{result.total} items built{superseded}")
    return redirect("scoring:progress", trial.code)


@login_required
def settings_page(request, code):
    access = _access(request, code, Role.INVESTIGATOR)
    trial = access.trial
    current = selectors.settings_for(access=access)
    form = SettingsForm(request.POST or None, trial=trial, current=current)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_settings(trial=trial, by=request.user, adjudicator=data["adjudicator"],
                                     reference_standard=data["reference_standard"], subscores=data["subscores"],
                                     ask_which_assisted=data["ask_which_assisted"],
                                     canonical_text=data["canonical_text"], aligned_pair=data["aligned_pair"])
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Scoring settings saved.")
            return redirect("scoring:progress", trial.code)
    return render(request, "scoring/settings.html", {"trial": trial, "form": form})
