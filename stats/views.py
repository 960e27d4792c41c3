"""Pages of the stats app for investigators and statisticians: the plan, runs with a progress bar, the report,
downloads."""
from __future__ import annotations

import base64
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import ServiceError
from trial import signatures
from trial.access import access_for
from trial.models import Signature

from . import interim, report, selectors, services
from . import plan as plan_schema
from .forms import PlanForm, PowerForm, power_initial
from .methods.power import plan_power
from .models import LookKind, RunStatus
from .selectors import ANALYSTS


@login_required
def analysis_home(request, code):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    plans = list(selectors.plans_for(access=access))
    frozen = selectors.latest_frozen_plan(trial)
    return render(request, "stats/analysis.html", {
        "trial": trial, "plans": plans, "latest": plans[0] if plans else None, "frozen": frozen,
        "runs": selectors.runs_for(access=access),
        "can_open_runs": selectors.may_open_runs(access),
        "can_run": (trial.status in services.RUNNABLE and frozen is not None
                    and (selectors.is_unblinded(trial) or selectors.may_see_masked(access))),
        "masked_refused": selectors.MASKED_REFUSED if not selectors.may_open_runs(access) else "",
        "unblinded": selectors.is_unblinded(trial),
        "estimand_lines": plan_schema.estimand_lines(plans[0].content) if plans else [],
        "interim_lines": plan_schema.interim_lines(plans[0].content) if plans else [],
        "power": (plans[0].content.get("power") or None) if plans else None,
        "freeze_meaning": Signature.Meaning.FREEZE_PLAN.label,
    })


@login_required
def plan_edit(request, code):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    latest = selectors.latest_plan(access=access)
    content = latest.content if latest else plan_schema.validate(plan_schema.default_plan(trial.design))
    form = PlanForm(request.POST or None, initial=PlanForm.initial_from(content))
    if request.method == "POST" and form.is_valid():
        try:
            plan = services.save_plan(trial=trial, by=request.user, content=form.content())
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Version {plan.version} of the analysis plan saved (not frozen yet).")
            return redirect("stats:home", trial.code)
    return render(request, "stats/plan_form.html", {
        "trial": trial, "form": form, "latest": latest,
        "new_version": latest is None or latest.is_frozen,
    })


@login_required
def power_page(request, code):
    """Power and readers needed for a paired-parallel design: a calculator (GET, nothing is written). The variance
    components can be typed in or taken from a finished run's fits; the plan form states the same inputs, and
    freezing the plan stores their result."""
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    latest = selectors.latest_plan(access=access)
    runs = ([r for r in selectors.runs_for(access=access) if r.status == RunStatus.DONE]
            if selectors.may_open_runs(access) else [])
    initial = {**power_initial(latest.content.get("power") if latest else None), "source": "typed in"}
    notes = []
    source_run = request.GET.get("from_run")
    if source_run:
        try:
            run = selectors.run_for(access=access, number=int(source_run))
        except ValueError:
            raise Http404("No such run.") from None
        fitted, source, missing = selectors.fitted_power_inputs(run)
        initial.update(fitted, source=source)
        notes += missing
    bound = "n_cases" in request.GET and not source_run
    form = PowerForm(request.GET if bound else None, initial=initial)
    result = None
    if bound and form.is_valid():
        result = plan_power(form.inputs(), design=trial.design)
    return render(request, "stats/power.html", {
        "trial": trial, "form": form, "result": result, "runs": runs, "notes": notes, "latest": latest,
        "frozen_power": (latest.content.get("power") or {}).get("result") if latest and latest.is_frozen else None,
    })


@login_required
@require_POST
def plan_freeze(request, code, version):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    plan = selectors.plan_for(access=access, version=version)
    try:
        # re-authentication first, outside the freeze's transaction (a wrong code counts against the device's throttle)
        proof = signatures.reauthenticate(user=request.user, credentials=signatures.Credentials.from_data(request.POST))
        plan = services.freeze_plan(plan=plan, by=request.user, proof=proof)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {plan.version} of the analysis plan is frozen; SHA-256 {plan.sha256}.")
    return redirect("stats:home", trial.code)


@login_required
def plan_json(request, code, version):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    plan = selectors.plan_for(access=access, version=version)
    response = HttpResponse(services.plan_document(plan), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.code}-analysis-plan-v{plan.version}.json"'
    return response


@login_required
@require_POST
def run_start(request, code):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    try:
        run = services.start_run(trial=trial, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("stats:home", trial.code)
    return redirect("stats:run", trial.code, run.number)


def _report_context(run, *, embed: bool) -> dict:
    results = selectors.visible_results(run)
    labels = selectors.arm_labels(run)
    meta = {
        "Trial": f"{run.trial.title} ({run.trial.code})" + (f", {run.trial.registration_id}"
                                                            if run.trial.registration_id else ""),
        "Design": run.trial.get_design_display(),
        "Analysis run": f"{run.number}, finished {run.finished_at:%Y-%m-%d %H:%M} UTC in {run.seconds:.1f} s",
        "Analysis plan": f"version {run.plan_version}, SHA-256 {run.plan_sha256}",
        "Dataset": f"SHA-256 {run.dataset_sha256}",
        "Audit trail": (f"{run.audit_anchor['count']} events, head {run.audit_anchor['hash'][:16]}… at "
                        f"{run.audit_anchor['at']} (anchored outside the database)" if run.audit_anchor
                        else "not recorded (a run made before audit anchors)"),
        "Code": f"cxr-trial {run.code_version.get('package', '')}, stats/methods SHA-256 "
                f"{run.code_version.get('methods_sha256', '')[:16]}…",
        "Arms": ("masked (arm X, arm Y) until the trial is unblinded" if not selectors.is_unblinded(run.trial)
                 else "; ".join(f"arm {k} = {v}" for k, v in labels.items())),
    }
    history = selectors.plan_history(run=run)
    if history["used_version_flagged"]:
        flags = next(v["flags"] for v in history["versions"] if v["used_by_this_run"])
        meta["Analysis plan"] += " — " + "; ".join(flags)
    mapping = selectors.revealed_mapping(run)
    doc = report.build_report(results, labels=labels, meta=meta, history=history,
                              interim=selectors.interim_for_report(run),
                              assisted=next((code for code, real in (mapping or {}).items() if real == "assisted"),
                                            None))
    if embed:
        images = {name: "data:image/png;base64," + base64.b64encode(report.plot(name, results, labels=labels)).decode()
                  for name in report.PLOTS}
    else:
        images = {name: reverse("stats:plot", args=[run.trial.code, run.number, name]) for name in report.PLOTS}
    for section in doc["sections"]:
        if section.get("plot"):
            section["image"] = images[section["plot"]]
    return {"doc": doc, "images": images, "run": run, "trial": run.trial}


@login_required
def run_page(request, code, number):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    run = selectors.run_for(access=access, number=number)
    context = {"trial": trial, "run": run, "summary": selectors.run_summary(run=run),
               "progress_api": reverse("api-analysis-run-progress", args=[trial.code, run.number])}
    if run.status == RunStatus.DONE:
        context.update(_report_context(run, embed=False))
    return render(request, "stats/run.html", context)


@login_required
def run_plot(request, code, number, name):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    run = selectors.run_for(access=access, number=number)
    if name not in report.PLOTS or run.status != RunStatus.DONE:
        raise Http404("No such plot.")
    png = report.plot(name, selectors.visible_results(run), labels=selectors.arm_labels(run))
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def run_report_file(request, code, number):
    """The report as one self-contained HTML file (plots embedded), to keep or send."""
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    run = selectors.run_for(access=access, number=number)
    if run.status != RunStatus.DONE:
        raise Http404("The run has not finished.")
    html = render_to_string("stats/report_file.html", _report_context(run, embed=True), request=request)
    services.report_downloaded(run=run, by=request.user)
    suffix = "" if selectors.is_unblinded(trial) else "-masked"
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.code}-analysis-run{run.number:03d}{suffix}.html"'
    return response


@login_required
def run_export(request, code, number):
    access = access_for(user=request.user, code=code, roles=ANALYSTS)
    trial = access.trial
    run = selectors.run_for(access=access, number=number)
    try:
        filename, data = services.export_run(run=run, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("stats:run", trial.code, run.number)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ------------------------------------------------------------------------------------------ interim looks


@login_required
def interim_page(request, code):
    """Every interim look (that it happened, for everyone with analysis access and the committee), the plan's
    planned looks with their boundaries, and the buttons to take a look for whoever may take it."""
    access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
    trial = access.trial
    planned = selectors.planned_looks(access=access)
    kinds = [k for k in LookKind.values if planned and k in planned["interim"]]
    return render(request, "stats/interim.html", {
        "trial": trial, "looks": selectors.looks_for(access=access), "planned": planned,
        "takeable": [(k, interim.KIND_LABELS[k]) for k in kinds if selectors.may_take_look(access, k)],
        "running": trial.status in services.INTERIM_STATUSES, "committee_only": selectors.COMMITTEE_ONLY,
        "is_committee": selectors.is_committee(access),
    })


@login_required
@require_POST
def interim_take(request, code, kind):
    access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
    trial = access.trial
    try:
        look = services.take_interim_look(trial=trial, by=request.user, kind=kind)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("stats:interim", trial.code)
    messages.success(request, f"Interim look {look.number} taken at information fraction "
                              f"{look.information_fraction:.3f}.")
    return redirect("stats:interim_look", trial.code, look.number)


@login_required
def interim_look_page(request, code, number):
    access = access_for(user=request.user, code=code, roles=selectors.LOOK_VIEWERS)
    look = selectors.look_for(access=access, number=number)
    detail = selectors.look_detail(access=access, look=look)
    return render(request, "stats/interim_look.html", {
        "trial": access.trial, "look": detail, "results": detail["results"],
        "results_json": json.dumps(detail["results"], indent=2, ensure_ascii=False, sort_keys=True)})
