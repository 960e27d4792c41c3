"""Top-level URLs: pages per app, the API under /api/, accounts, the OpenAPI schema and its browsable doc page."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.health import healthz
from core.security import ThrottledLoginView, admin_login
from trial import account_views

accounts = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", account_views.account, name="account"),
    path("tokens/", account_views.api_token_create, name="account_token_create"),
    path("tokens/<int:token_id>/revoke/", account_views.api_token_revoke, name="account_token_revoke"),
    path("second-factor/", account_views.second_factor_verify, name="second_factor_verify"),
    path("second-factor/setup/", account_views.second_factor_setup, name="second_factor_setup"),
    path("second-factor/recovery-codes/", account_views.second_factor_recovery_codes,
         name="second_factor_recovery_codes"),
    path("password/change/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password/reset/", account_views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", account_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

urlpatterns = [
    # The admin has no login of its own: the one login page (throttled, then the second factor) serves it.
    path("admin/login/", admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: no inline script, so the content security policy holds.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    # DICOMweb STOW-RS: a hospital system sends images to a site with its sender token (trial.dicomweb_views)
    path("dicomweb/", include("trial.dicomweb_urls")),
    path("api/", include("trial.api_urls")),
    path("api/", include("ai.api_urls")),
    path("api/", include("reading.api_urls")),
    path("api/", include("scoring.api_urls")),
    path("api/", include("stats.api_urls")),
    path("", include("trial.urls")),
    path("", include("ai.urls")),
    path("", include("reading.urls")),
    path("", include("scoring.urls")),
    path("", include("stats.urls")),
    path("", include("evaluation.urls")),
]
