"""Investigator and member pages: thin; selectors read, services write."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from core import otp
from core.errors import ServiceError

from . import audit, outbox, selectors, services, signatures
from .access import access_for
from .forms import InviteForm, SignatureForm, SignupForm, SiteForm, TrialForm, TrialSettingsForm
from .models import Invitation, Role, Signature, SiteEnrolment, Status


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
            next_statuses=[(s, Status(s).label) for s in trial.next_statuses() if s not in services.SIGNED_STATUSES],
            signed_next={Status.LOCKED: "trial:lock", Status.UNBLINDED: "trial:unblinding"}.get(
                next(iter(trial.next_statuses()), None)),
            site_form=SiteForm(), invite_form=InviteForm(trial=trial),
        )
    return render(request, "trial/trial_detail.html", context)


@login_required
def trial_settings(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    form = TrialSettingsForm(request.POST or None, trial=trial)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items()
                   if k != "code" and (k not in form.fields or not form.fields[k].disabled)}
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
        services.transition_trial(trial=trial, by=request.user, to=request.POST.get("to", ""),
                                  reason=request.POST.get("reason", ""))
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
    return render(request, "trial/case_detail.html", {"trial": access.trial, "case": case, "identity": identity,
                                                      "images": selectors.case_images(access=access, case=case)})


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
def case_study_image(request, code, case_code, position, kind):
    """An image of a case's study by its position in the case (1: the primary), for investigators only."""
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    field_file = selectors.case_study_image_for(access=access, code=case_code, position=position, kind=kind)
    response = FileResponse(field_file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
def audit_log(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    events = selectors.audit_events_for(access=access, limit=500)
    return render(request, "trial/audit_log.html", {
        "trial": access.trial, "events": events, "blinded": access.trial.status != Status.UNBLINDED,
        "verification": selectors.audit_status_for(access=access)})


# ----------------------------------------------------------------------------- signed acts: lock and unblinding


def _signed_act(request, *, trial, form, act, done: str):
    """Re-authenticate outside the act's transaction (a wrong code counts against the device's throttle even
    though the act is refused), then do the act; a refusal goes back to the form, with nothing changed."""
    if not form.is_valid():
        return None
    try:
        proof = signatures.reauthenticate(user=request.user,
                                          credentials=signatures.Credentials.from_data(form.cleaned_data))
        act(proof)
    except ServiceError as exc:
        _form_error(form, exc)
        return None
    messages.success(request, done)
    return redirect("trial:detail", trial.code)


@login_required
def trial_lock(request, code):
    trial = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR]).trial
    form = None
    if Status.LOCKED in trial.next_statuses():
        form = SignatureForm(request.POST or None, submit_label="Sign and lock")
        if request.method == "POST":
            done = _signed_act(request, trial=trial, form=form, done="The trial is locked.",
                               act=lambda proof: services.lock_trial(trial=trial, by=request.user, proof=proof))
            if done is not None:
                return done
    elif request.method == "POST":
        messages.error(request, "Only a reader study in scoring, or a prospective trial closed to enrolment, can be "
                                "locked.")
    return render(request, "trial/signed_act.html", {
        "trial": trial, "title": f"Lock {trial.code}", "form": form, "meaning": Signature.Meaning.LOCK.label,
        "content_hash": audit.current_head().hash,
        "signatures": selectors.signatures_for(access=access_for(user=request.user, code=code)),
        "explanation": ["Locking ends data collection: no report, score or case can change afterwards, and the "
                        "analysis can run on the locked data.",
                        "Your signature is bound to the audit chain's head, which covers every write made before."]})


@login_required
def trial_unblinding(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR, Role.STATISTICIAN])
    trial = access.trial
    pending = selectors.pending_unblinding(access=access)
    form, meaning, act = None, "", None
    if trial.status == Status.LOCKED:
        if pending is None and access.has(Role.INVESTIGATOR):
            meaning = Signature.Meaning.UNBLIND_REQUEST.label
            form = SignatureForm(request.POST or None, submit_label="Sign and ask for unblinding")

            def act(proof):
                services.request_unblinding(trial=trial, by=request.user, proof=proof)
        elif pending is not None and access.has(Role.STATISTICIAN) and pending.signer_id != request.user.pk:
            meaning = Signature.Meaning.UNBLIND_APPROVE.label
            form = SignatureForm(request.POST or None, submit_label="Sign and unblind")

            def act(proof):
                services.approve_unblinding(trial=trial, by=request.user, proof=proof)
    if request.method == "POST":
        if form is None:
            messages.error(request, "There is nothing for you to sign here now.")
            return redirect("trial:unblinding", trial.code)
        done = _signed_act(request, trial=trial, form=form, act=act,
                           done="Unblinding asked for: a statistician approves it." if pending is None
                           else "The trial is unblinded.")
        if done is not None:
            return done
    waiting = (f"Asked for by {pending.signer_name} on {pending.signed_at:%Y-%m-%d %H:%M} UTC; it waits for a "
               "statistician who did not ask." if pending is not None else "")
    return render(request, "trial/signed_act.html", {
        "trial": trial, "title": f"Unblind {trial.code}", "form": form, "meaning": meaning,
        "content_hash": pending.content_hash if pending is not None else audit.current_head().hash,
        "signatures": selectors.signatures_for(access=access),
        "explanation": [line for line in (
            "Unblinding reveals which arm is which, in every analysis and export. It needs two people, each signing "
            "with their password and second factor: an investigator asks, then a statistician of the trial approves.",
            "Only a locked trial can be unblinded." if trial.status != Status.LOCKED else waiting) if line]})


# ----------------------------------------------------------------------------- conduct of a live trial


@login_required
def conduct_page(request, code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    return render(request, "trial/conduct.html", {
        "trial": access.trial, "conduct": selectors.conduct(access=access),
        "site_states": SiteEnrolment.choices,
        "dicom_listener": f"AE title {settings.CXR_DICOM_AE_TITLE}, port {settings.CXR_DICOM_PORT}",
        "next_statuses": [(s, Status(s).label) for s in access.trial.next_statuses()
                          if s not in services.SIGNED_STATUSES],
    })


def _conduct_act(request, code, act, *, back: str = "trial:conduct") -> HttpResponse:
    """Run one investigator's act of the conduct page (or of the page `back` names); its refusal is shown, nothing
    changes."""
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    try:
        done = act(access)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect(back, code)


def _site(access, code: str):
    site = selectors.site_by_code(access=access, code=code)
    if site is None:
        raise Http404("No such site in this trial.")
    return site


def _member(access, pseudonym: str):
    member = access.trial.memberships.filter(pseudonym=pseudonym, role=Role.READER).first()
    if member is None:
        raise Http404("No such reader in this trial.")
    return member


@login_required
@require_POST
def conduct_site(request, code, site_code):
    def act(access):
        site = _site(access, site_code)
        target = request.POST.get("target_cases", "").strip()
        if target != str(site.target_cases or ""):
            if target and not target.isdigit():
                raise ServiceError("The target is a whole number of cases.", field="target_cases")
            services.set_site_target(site=site, by=request.user, target_cases=int(target) if target else None)
        services.set_site_enrolment(site=site, by=request.user, state=request.POST.get("enrolment", ""),
                                    reason=request.POST.get("reason", ""))
        return f"Site {site.code} updated."
    return _conduct_act(request, code, act)


@login_required
@require_POST
def conduct_site_dicom(request, code, site_code):
    """The calling AE titles and host addresses from which the site's PACS sends films (trial.listener)."""
    def act(access):
        site = _site(access, site_code)
        words = lambda name: request.POST.get(name, "").replace(",", " ").split()  # noqa: E731
        services.set_site_dicom_senders(site=site, by=request.user, ae_titles=words("ae_titles"),
                                        hosts=words("hosts"))
        return f"The DICOM senders of site {site.code} are saved."
    return _conduct_act(request, code, act)


@login_required
@require_POST
def conduct_duty(request, code, pseudonym):
    def act(access):
        member = services.set_on_duty(membership=_member(access, pseudonym), by=request.user,
                                      on_duty=request.POST.get("on_duty") == "1")
        return f"{member.pseudonym} is {'on' if member.on_duty else 'off'} duty."
    return _conduct_act(request, code, act)


@login_required
@require_POST
def conduct_roster(request, code, pseudonym):
    """A reader's weekly roster (e.g. "mon-fri 08:00-16:00"), read in their site's time zone; empty: duty by hand."""
    def act(access):
        member = services.set_roster(membership=_member(access, pseudonym), by=request.user,
                                     roster_text=request.POST.get("roster", ""),
                                     time_zone=request.POST.get("time_zone", "").strip() or None)
        return f"{member.pseudonym}'s roster is saved; {'on' if member.on_duty else 'off'} duty now."
    return _conduct_act(request, code, act)


@login_required
@require_POST
def conduct_withdraw(request, code, pseudonym):
    def act(access):
        member = services.withdraw_reader(membership=_member(access, pseudonym), by=request.user,
                                          reason=request.POST.get("reason", ""))
        return f"{member.pseudonym} is withdrawn; their open reads go to other readers of their arm and site."
    return _conduct_act(request, code, act)


@login_required
@require_POST
def conduct_deviation(request, code):
    def act(access):
        case_code = request.POST.get("case", "").strip()
        case = selectors.case_for(access=access, code=case_code) if case_code else None
        services.report_deviation(trial=access.trial, by=request.user, case=case,
                                  description=request.POST.get("description", ""),
                                  reason=request.POST.get("reason", ""))
        return "The deviation is logged."
    return _conduct_act(request, code, act)


# ------------------------------------------------------------------------------------------ the hospital's wires


def _hospital_page(request, code, *, new_key: str = "", status: int = 200) -> HttpResponse:
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    response = render(request, "trial/hospital.html", {
        "trial": access.trial, "wires": selectors.hospital_wires(access=access), "new_key": new_key,
        "dicom_listener": f"AE title {settings.CXR_DICOM_AE_TITLE}, port {settings.CXR_DICOM_PORT}",
        "stow_url": request.build_absolute_uri(reverse("dicomweb:stow")),
    }, status=status)
    response["Cache-Control"] = "no-store"  # a new sender key is on this page once
    return response


@login_required
@require_safe
def hospital_page(request, code):
    return _hospital_page(request, code)


def _hospital_act(request, code, act) -> HttpResponse:
    return _conduct_act(request, code, act, back="trial:hospital")


@login_required
@require_POST
def hospital_destinations(request, code, site_code):
    """Where the site's reports of record go: its PACS (a DICOM SR by C-STORE) and its FHIR server."""
    def act(access):
        site = _site(access, site_code)
        post = request.POST
        services.set_site_destinations(site=site, by=request.user, pacs_ae_title=post.get("pacs_ae_title", ""),
                                       pacs_host=post.get("pacs_host", ""), pacs_port=post.get("pacs_port") or None,
                                       pacs_tls=post.get("pacs_tls") == "1",
                                       fhir_base_url=post.get("fhir_base_url", ""),
                                       fhir_token_env=post.get("fhir_token_env", ""))
        return f"The destinations of site {site.code} are saved."
    return _hospital_act(request, code, act)


@login_required
@require_POST
def hospital_token_issue(request, code, site_code):
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    site = _site(access, site_code)
    try:
        token, key = services.issue_sender_token(site=site, by=request.user, name=request.POST.get("name", ""))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("trial:hospital", code)
    messages.success(request, f"Sender token {token.prefix}… made for site {site.code}; copy the key now: it is not "
                              "shown again.")
    return _hospital_page(request, code, new_key=key)


@login_required
@require_POST
def hospital_token_revoke(request, code, token_id: int):
    def act(access):
        token = next((t for s in selectors.hospital_wires(access=access)["sites"] for t in s.sender_tokens.all()
                      if t.pk == token_id), None)
        if token is None:
            raise Http404("No such sender token in this trial.")
        services.revoke_sender_token(token=token, by=request.user)
        return f"Sender token {token.prefix}… revoked."
    return _hospital_act(request, code, act)


@login_required
@require_POST
def hospital_resend(request, code, delivery_id: int):
    def act(access):
        delivery = selectors.delivery_of(access=access, delivery_id=delivery_id)
        if delivery is None:
            raise Http404("No such delivery in this trial.")
        delivery = outbox.resend(delivery=delivery, by=request.user)
        return (f"{delivery.release.case.code} v{delivery.release.version} sent again: "
                f"{delivery.get_state_display().lower()}.")
    return _hospital_act(request, code, act)


@login_required
@require_safe
def hospital_fhir_download(request, code, case_code, version: int):
    """A released report as a FHIR DiagnosticReport, for a site without a FHIR endpoint (the investigator hands it to
    the hospital). It carries PHI: investigators only, audited, never cached."""
    access = access_for(user=request.user, code=code, roles=[Role.INVESTIGATOR])
    release = selectors.release_of(access=access, case_code=case_code, version=version)
    if release is None:
        raise Http404("No such released report.")
    body = outbox.fhir_json(release=release)
    audit.record(actor=request.user, action="report.fhir_downloaded", obj=release, trial=access.trial,
                 payload={"case": release.case.code, "version": release.version})
    response = HttpResponse(body, content_type="application/fhir+json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{access.trial.code}-{case_code}-v{version}.fhir.json"'
    response["Cache-Control"] = "no-store"
    return response
