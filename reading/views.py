"""Reader, senior and investigator pages of the reading app: thin; selectors read, services write."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core import clock
from core.errors import ServiceError
from trial import services as trial_services
from trial import signatures
from trial.access import access_for
from trial.models import Role, Signature

from . import selectors, services
from .serializers import read_payload

SIGNING_SESSION_KEY = "cxr_signing_session"  # the user who gave both components at a first signing in this session


@login_required
def worklist_page(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.READER])
    worklist = selectors.worklist(access=access)
    resume = worklist.resume
    return render(request, "reading/worklist.html", {
        "trial": access.trial, "worklist": worklist, "progress": {"done": worklist.done, "total": worklist.total},
        "resume_url": reverse("reading:read", args=[code, resume.id]) if resume else None,
        "resume_id": resume.id if resume else None,
        # a prospective trial's worklist refreshes itself, and its reader goes on and off duty here
        "live": access.trial.is_prospective, "live_every": settings.CXR_WORKLIST_REFRESH_SECONDS,
        "on_duty": access.membership(Role.READER).on_duty, "now": clock.now(),
    })


@login_required
@require_POST
def duty(request, code):
    """A reader goes on or off duty (a prospective trial routes new cases only to readers on duty)."""
    access = access_for(user=request.user, code=code, roles=[Role.READER])
    try:
        trial_services.set_on_duty(membership=access.membership(Role.READER), by=request.user,
                                   on_duty=request.POST.get("on_duty") == "1")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("reading:worklist", code)


@never_cache  # the page carries the read's saved text: "back" must not show an old copy of it
@login_required
def read_page(request, code, read_id):
    """The reading screen, with the read's payload embedded (json_script): the radiograph is requested as soon
    as the page arrives, without first asking the API for the read."""
    try:
        read = selectors.own_read(read_id=read_id, user=request.user, code=code)
    except PermissionDenied:
        access_for(user=request.user, code=code, roles=[Role.READER])  # not a reader of that trial: say only that
        raise
    services.note_delivery(read=read)
    payload = read_payload(selectors.read_screen(read=read))
    return render(request, "reading/read.html", {
        "trial": read.trial, "read": payload, "read_api_url": reverse("api-read", args=[read.pk]),
        "worklist_url": reverse("reading:worklist", args=[code]),
    })


@login_required
def read_image(request, read_id, kind):
    """The radiograph of a read (its study's primary image), for its reader only (display PNG or the packed 16-bit
    values)."""
    return study_image(request, read_id, 1, kind)


@login_required
def study_image(request, read_id, position, kind):
    """An image of the read's study by its position in the case (1: the primary), for the read's reader only."""
    field = selectors.radiograph(read_id=read_id, user=request.user, kind=kind, position=position)
    # An image's position in its case never changes (a later image joins at the end), so caching by URL is safe.
    return _private_png(field, max_age=86400)


def _private_png(field, *, max_age: int) -> FileResponse:
    """An image file (a display or values PNG) for the user who may see it, cached by their browser only."""
    if field is None:
        raise PermissionDenied("Unknown image.")
    response = FileResponse(field.open("rb"), content_type="image/png")
    response["Cache-Control"] = f"private, max-age={max_age}"
    return response


@login_required
def signoff_queue(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
    return render(request, "reading/signoff_queue.html", {
        "trial": access.trial, "reports": selectors.signoff_queue(access=access),
        "records": selectors.record_queue(access=access),
    })


@never_cache  # the page may carry what the senior typed (a refusal): "back" must not show an old copy of it
@login_required
def write_record(request, code, case_code):
    """A senior writes and signs the report of record of a case (release policy "senior"), looking at every image of
    its study beside its two signed reports (as 1 and 2, never by arm); what they typed comes back with a refusal."""
    access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
    item = selectors.record_item(access=access, case_code=case_code)
    context = {"trial": access.trial, "item": item, "typed": None, "meaning": Signature.Meaning.RECORD_REPORT.label,
               "images": _record_images(code, case_code, item["case"])}
    if request.method != "POST":
        return render(request, "reading/record.html", context)
    try:
        proof = signatures.reauthenticate(user=request.user,
                                          credentials=signatures.Credentials.from_data(request.POST))
        services.write_report_of_record(case_id=item["case"].pk, by=request.user, proof=proof,
                                        findings=request.POST.get("findings", ""),
                                        impression=request.POST.get("impression", ""))
    except ServiceError as exc:
        messages.error(request, exc.message)
        context["typed"] = {"findings": request.POST.get("findings", ""),
                            "impression": request.POST.get("impression", "")}
        return render(request, "reading/record.html", context, status=400)
    messages.success(request, f"The report of record of {case_code} is signed.")
    return redirect("reading:signoff_queue", code)


def _record_images(code: str, case_code: str, case) -> list[dict]:
    return selectors.viewer_images(
        selectors.case_images(case=case),
        lambda position, kind: reverse("reading:record_image", args=[code, case_code, position, kind]))


@login_required
def record_image(request, code, case_code, position, kind):
    """An image of the study of a case whose report of record the senior may write now (the record page's check)."""
    access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
    field = selectors.record_image(access=access, case_code=case_code, position=position, kind=kind)
    return _private_png(field, max_age=3600)  # short: the case leaves the queue once its record is signed


@login_required
def signoff_report(request, code, report_id):
    access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
    trial = access.trial
    report = selectors.report_for_senior(access=access, report_id=report_id)
    continuing = request.session.get(SIGNING_SESSION_KEY) == request.user.pk
    context = {"trial": trial, "report": report, "typed": None, "continuing": continuing,
               "meaning": Signature.Meaning.SIGN_OFF.label, "images": _signoff_images(trial.code, report)}
    if request.method == "POST":
        try:
            # re-authentication first, outside the signing's transaction (a wrong code counts against the throttle)
            proof = signatures.reauthenticate(user=request.user, continuing=continuing,
                                              credentials=signatures.Credentials.from_data(request.POST))
            if request.POST.get("action") == "edit":
                report = services.correct_and_sign(
                    read_id=report.read_id, by=request.user, findings=request.POST.get("findings", ""),
                    impression=request.POST.get("impression", ""), reason=request.POST.get("reason", ""),
                    finding_flags={f: True for f in request.POST.getlist("finding_flags")}, proof=proof,
                )
            else:
                services.sign_report(report=report, by=request.user, proof=proof)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return render(request, "reading/signoff_report.html", {**context, "typed": request.POST})
        # Later signings in this continuous session (it ends at logout or the idle timeout) need the password only.
        request.session[SIGNING_SESSION_KEY] = request.user.pk
        messages.success(request, f"Report of {report.read.case.code} signed.")
        return redirect("reading:signoff_queue", trial.code)
    return render(request, "reading/signoff_report.html", context)


def _signoff_images(code: str, report) -> list[dict]:
    """Every image of the report's study for the viewer, served by senior_study_image by its position in the case."""
    return selectors.viewer_images(
        selectors.signoff_images(report=report),
        lambda position, kind: reverse("reading:senior_study_image", args=[code, report.pk, position, kind]))


@login_required
def senior_image(request, code, report_id):
    """The primary image's display PNG of a report in the senior's queue (the address the page used before a case
    had more images)."""
    return senior_study_image(request, code, report_id, 1, "display")


@login_required
def senior_study_image(request, code, report_id, position, kind):
    """An image of the study of a report that the senior may sign, by its position in the case (1: the primary):
    the same check as the sign-off page's."""
    access = access_for(user=request.user, code=code, roles=[Role.SENIOR])
    field = selectors.signoff_image(access=access, report_id=report_id, position=position, kind=kind)
    return _private_png(field, max_age=3600)  # short: the report leaves the queue once it is signed


@login_required
def dashboard_page(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    dashboard = selectors.dashboard(access=access)
    turnaround = dashboard["turnaround"]
    return render(request, "reading/dashboard.html", {
        "trial": access.trial, **dashboard,
        "turnaround_rows": [("draft ready", turnaround["draft"]), ("report submitted", turnaround["submitted"]),
                            ("report signed", turnaround["signed"])]})


@login_required
@require_POST
def route_now(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    try:
        routed = services.route_trial(trial=access.trial, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{routed} cases routed to worklists.")
    return redirect("reading:dashboard", access.trial.code)
