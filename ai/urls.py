from django.urls import path

from . import views

app_name = "ai"
urlpatterns = [
    path("t/<slug:code>/ai/", views.drafts_page, name="drafts"),
    path("t/<slug:code>/ai/model/", views.assign_model, name="assign_model"),
    path("t/<slug:code>/ai/backfill/", views.backfill, name="backfill"),
    path("t/<slug:code>/ai/drafts/<int:draft_id>/retry/", views.retry, name="retry"),
]
