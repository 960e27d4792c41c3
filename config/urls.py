"""Top-level URLs: pages per app, the API under /api/, the OpenAPI schema and its browsable doc page."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("trial.api_urls")),
    path("api/", include("ai.api_urls")),
    path("api/", include("reading.api_urls")),
    path("", include("trial.urls")),
    path("", include("ai.urls")),
    path("", include("reading.urls")),
]
