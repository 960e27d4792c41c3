from django.urls import path

from . import api

urlpatterns = [
    path("trials/<slug:code>/model/", api.TrialModelAPI.as_view(), name="api-trial-model"),
    path("trials/<slug:code>/drafts/", api.DraftListAPI.as_view(), name="api-drafts"),
    path("trials/<slug:code>/drafts/progress/", api.DraftProgressAPI.as_view(), name="api-drafts-progress"),
    path("trials/<slug:code>/drafts/backfill/", api.DraftBackfillAPI.as_view(), name="api-drafts-backfill"),
    path("trials/<slug:code>/drafts/<int:draft_id>/retry/", api.DraftRetryAPI.as_view(), name="api-draft-retry"),
]
