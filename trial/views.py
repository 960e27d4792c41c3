"""Investigator and member pages: thin; selectors read, services write."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from core import otp
from core.errors import ServiceError

from . import selectors, services
from .access import access_for
from .forms import InviteForm, SignupForm, SiteForm, TrialForm, TrialSettingsForm
from .models import ALLOWED_TRANSITIONS, Invitation, Role, Status


def _form_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


@login_required
def home(request):
    trials = list(selectors.trials_for_user(user=request.user))
    roles = selectors.memberships_of_user(user=request.user)
    for trial in trials:
        trial.my_roles = sorted(roles.get(trial.pk, []))
    can_create = request.user.is_staff or request.user.has_perm("trial.add_trial")
    return render(request, "trial/home.html", {"trials": trials, "can_create": can_create})


@login_required
def trial_create(request):
    if not (request.user.is_staff or request.user.has_perm("trial.add_trial")):
        # The same rule as services.create_trial, before the form is shown: nobody fills in a form they cannot send.
        raise PermissionDenied("You are not allowed to create trials; ask an administrator.")
    form = TrialForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            trial = services.create_trial(by=request.user, **form.cleaned_data)
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Trial {trial.code} created. Add sites and invite members.")
            return redirect("trial:detail", trial.code)
    return render(request, "trial/trial_form.html", {"form": form, "title": "New trial"})


@login_required
def trial_detail(request, code):
    access = access_for(user=request.user, code=code)
    trial = access.trial
    context = {"trial": trial, "my_roles": sorted(access.roles),
               "sites": selectors.sites_for(access=access) if access.has(*selectors.SITE_ROLES) else []}
    if access.has(Role.INVESTIGATOR):
        context.update(
            members=selectors.members_for(access=access),
            invitations=selectors.invitations_for(access=access),
            balance=selectors.arm_balance(access=access),
            n_cases=selectors.cases_for(access=access).count(),
            next_statuses=[(s, Status(s).label) for s in ALLOWED_TRANSITIONS[trial.status]],
            site_form=SiteForm(), invite_form=InviteForm(trial=trial),
        )
    return render(request, "trial/trial_detail.html", context)


@login_required
def trial_settings(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    form = TrialSettingsForm(request.POST or None, trial=trial)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if k != "code" and not form.fields[k].disabled}
        try:
            services.update_trial_settings(trial=trial, by=request.user, **changes)
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("trial:detail", trial.code)
    return render(request, "trial/trial_form.html",
                  {"form": form, "title": f"Settings of {trial.code}", "trial": trial})


@login_required
@require_POST
def trial_transition(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    try:
        services.transition_trial(trial=trial, by=request.user, to=request.POST.get("to", ""))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The trial is now {request.POST['to']}.")
    return redirect("trial:detail", trial.code)


@login_required
@require_POST
def site_add(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    form = SiteForm(request.POST)
    if form.is_valid():
        try:
            services.add_site(trial=trial, by=request.user, **form.cleaned_data)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Site {form.cleaned_data['code']} added.")
    else:
        messages.error(request, "Site not added: " + "; ".join(e for errs in form.errors.values() for e in errs))
    return redirect("trial:detail", trial.code)


@login_required
@require_POST
def member_invite(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    form = InviteForm(request.POST, trial=trial)
    if form.is_valid():
        try:
            result = services.invite_member(
                trial=trial, by=request.user, **form.cleaned_data,
                accept_url=lambda token: request.build_absolute_uri(reverse("trial:accept_invitation", args=[token])),
            )
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            if isinstance(result, Invitation):
                messages.success(request, f"Invitation sent to {result.email}.")
            else:
                messages.success(request, f"{result.user.get_username()} added as {result.role} ({result.pseudonym}).")
    else:
        messages.error(request, "Not invited: " + "; ".join(e for errs in form.errors.values() for e in errs))
    return redirect("trial:detail", trial.code)


def accept_invitation(request, token):
    invitation = selectors.open_invitation(token=token)
    if invitation is None:
        raise Http404("This invitation is not valid, has expired or was already used.")
    form = None if request.user.is_authenticated else SignupForm(request.POST or None)
    context = {"invitation": invitation, "form": form,
               "for_this_account": request.user.is_authenticated
               and request.user.email.strip().casefold() == invitation.email.casefold()}
    if request.method == "POST":
        if form is None:
            try:
                services.accept_invitation(token=token, user=request.user)
            except ServiceError as exc:
                messages.error(request, exc.message)
                return render(request, "trial/accept_invitation.html", context, status=exc.status_code)
            otp.recheck(request)  # the new role may need a second factor from now on
        else:
            if not form.is_valid():
                return render(request, "trial/accept_invitation.html", context)
            try:  # the account and the membership, together or not at all
                membership = services.join_by_invitation(token=token, username=form.cleaned_data["username"],
                                                         password=form.cleaned_data["password"])
            except ServiceError as exc:
                _form_error(form, exc)
                return render(request, "trial/accept_invitation.html", context)
            login(request, membership.user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, f"You joined {invitation.trial.title} as {invitation.role}.")
        return redirect("trial:detail", invitation.trial.code)
    return render(request, "trial/accept_invitation.html", context)


@login_required
def case_list(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    return render(request, "trial/case_list.html", {"trial": access.trial, "cases": selectors.cases_for(access=access)})


# The page uploads through the API, one file at a time (CaseListAPI.post limits the body and checks the role
# before reading it). Nothing is ever posted here: require_safe answers 405 without reading a byte of a body,
# and csrf_exempt keeps the CSRF middleware from reading it first (it parses a POST's whole form, to a
# temporary file, before any view or decorator runs). A view that accepts no unsafe method has nothing for
# CSRF to protect; the page itself still gets its CSRF cookie for the API calls.
@csrf_exempt
@require_safe
@login_required
def case_upload(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    return render(request, "trial/case_upload.html",
                  {"trial": access.trial, "sites": selectors.sites_for(access=access)})


@login_required
def case_detail(request, code, case_code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    case = selectors.case_for(access=access, code=case_code)
    identity = selectors.case_identity(access=access, case=case)
    return render(request, "trial/case_detail.html", {"trial": access.trial, "case": case, "identity": identity})


@login_required
def case_image(request, code, case_code, kind):
    access = access_for(user=request.user, code=code)
    if kind not in ("display", "thumbnail"):
        raise PermissionDenied("Unknown image.")
    field_file = selectors.case_image_for(access=access, code=case_code, kind=kind)
    response = FileResponse(field_file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
def audit_log(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    events = selectors.audit_events_for(access=access)[:500]
    return render(request, "trial/audit_log.html", {"trial": access.trial, "events": events})
