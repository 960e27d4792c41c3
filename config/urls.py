"""Top-level URLs: pages per app, the API under /api/, the OpenAPI schema and its browsable doc page."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.health import healthz
from core.security import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: no inline script, so the content security policy holds.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
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
