"""Account pages: the second factor (enrol, verify, recovery codes), password change and reset (Django's views, the
writes through services so that they are audited), and the person's own API tokens. Thin: services write."""
from __future__ import annotations

import base64

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import user_has_device

from core import otp
from core.errors import ServiceError

from . import selectors, services
from .forms import ApiTokenForm, SecondFactorForm

RECOVERY_CODES_KEY = "cxr_recovery_codes_once"


def _next(request, default: str = "") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default or reverse(settings.LOGIN_REDIRECT_URL)


def _with_next(name: str, request) -> str:
    target = request.POST.get("next") or request.GET.get("next")
    return reverse(name) + (f"?{urlencode({'next': target})}" if target else "")


# ------------------------------------------------------------------------------------------ second factor


@never_cache
@login_required
def second_factor_verify(request):
    """The second step of a login: a code of the authenticator app, or a recovery code."""
    if not user_has_device(request.user):
        return redirect(_with_next("second_factor_setup", request))
    if otp.session_verified(request):
        return redirect(_next(request))
    form = SecondFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = services.second_factor_wait(user=request.user)
        device = None if wait else services.verify_second_factor(user=request.user, code=form.cleaned_data["code"])
        if device is not None:
            otp.mark_verified(request, device)
            return redirect(_next(request))
        wait = services.second_factor_wait(user=request.user)
        form.add_error("code", "That code is not right." + (f" Wait {wait} seconds before the next try." if wait
                                                             else ""))
    return render(request, "registration/second_factor_verify.html", {"form": form, "next": _next(request)})


def _key_text(device) -> str:
    """The secret as an authenticator app takes it typed in: base32, in groups of four."""
    key = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


@never_cache
@login_required
def second_factor_setup(request):
    """Enrol an authenticator app (replacing an earlier one only from a session that gave the second factor)."""
    if user_has_device(request.user) and not otp.session_verified(request):
        return redirect(_with_next("second_factor_verify", request))
    device = services.pending_totp_device(user=request.user)
    form = SecondFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = services.confirm_totp_device(user=request.user, device=device, code=form.cleaned_data["code"])
        if codes is not None:
            otp.mark_verified(request, device)
            request.session[RECOVERY_CODES_KEY] = codes
            messages.success(request, "Your authenticator app is set up.")
            return redirect(_with_next("second_factor_recovery_codes", request))
        form.add_error("code", "That code is not right: check the time on your phone and try the next code.")
    return render(request, "registration/second_factor_setup.html", {
        "form": form, "qr": otp.qr_data_uri(device.config_url), "key": _key_text(device), "next": _next(request),
        "required": otp.requires_second_factor(request.user),
    })


@never_cache
@login_required
def second_factor_recovery_codes(request):
    """Recovery codes: shown once, just after they are made; new ones (the old stop working) on request."""
    if request.method == "POST":
        if not (user_has_device(request.user) and otp.session_verified(request)):
            raise PermissionDenied("Give your second factor first.")
        request.session[RECOVERY_CODES_KEY] = services.new_recovery_codes(user=request.user)
        return redirect(_with_next("second_factor_recovery_codes", request))
    codes = request.session.pop(RECOVERY_CODES_KEY, None)
    return render(request, "registration/recovery_codes.html", {"codes": codes, "next": _next(request)})


# ------------------------------------------------------------------------------------------ the account page


def _token_form(request, data=None):
    return ApiTokenForm(data, trials=selectors.trials_for_user(user=request.user),
                        max_days=settings.CXR_API_TOKEN_MAX_DAYS, default_days=settings.CXR_API_TOKEN_DEFAULT_DAYS)


def _account_page(request, *, form=None, new_key: str | None = None, status: int = 200):
    response = render(request, "registration/account.html", {
        "has_device": user_has_device(request.user),
        "verified": otp.session_verified(request),
        "required": otp.requires_second_factor(request.user),
        "tokens": selectors.api_tokens_of_user(user=request.user),
        "token_form": form or _token_form(request),
        "new_key": new_key,
        "idle_minutes": settings.CXR_IDLE_TIMEOUT_MINUTES,
    }, status=status)
    response["Cache-Control"] = "no-store"  # a new key is on this page once
    return response


@login_required
def account(request):
    return _account_page(request)


@login_required
@require_POST
def api_token_create(request):
    form = _token_form(request, request.POST)
    if form.is_valid():
        try:
            token, key = services.issue_api_token(trial=form.cleaned_data["trial"], by=request.user,
                                                  name=form.cleaned_data["name"], days=form.cleaned_data["days"])
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Token {token.prefix}… created for {token.trial.code}; copy the key now: it is "
                                      "not shown again.")
            return _account_page(request, new_key=key)
    return _account_page(request, form=form, status=400)


@login_required
@require_POST
def api_token_revoke(request, token_id: int):
    token = selectors.api_tokens_of_user(user=request.user).filter(pk=token_id).first()
    if token is None:
        raise PermissionDenied("No such token of yours.")
    services.revoke_api_token(token=token, by=request.user)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("account")


# ------------------------------------------------------------------------------------------ passwords


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = reverse_lazy("password_change_done")

    def form_valid(self, form):
        try:
            services.set_password(user=form.user, by=self.request.user, password=form.cleaned_data["new_password1"],
                                  how="changed")
        except ServiceError as exc:
            form.add_error("new_password2", exc.message)
            return self.form_invalid(form)
        update_session_auth_hash(self.request, form.user)  # this session stays; every other one ends
        return redirect(self.get_success_url())


class PasswordResetView(auth_views.PasswordResetView):
    success_url = reverse_lazy("password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")
    post_reset_login = False  # the second factor is still asked at the next login

    def form_valid(self, form):
        try:
            services.set_password(user=form.user, by=form.user, password=form.cleaned_data["new_password1"],
                                  how="reset")
        except ServiceError as exc:
            form.add_error("new_password2", exc.message)
            return self.form_invalid(form)
        self.request.session.pop(auth_views.INTERNAL_RESET_SESSION_TOKEN, None)
        return redirect(self.get_success_url())

