from django.urls import path

from . import api

urlpatterns = [
    path("trials/<slug:code>/scoring/items/", api.ExpertItemsAPI.as_view(), name="api-scoring-items"),
    path("scoring/items/<str:key>/", api.ExpertItemAPI.as_view(), name="api-scoring-item"),
    path("scoring/items/<str:key>/open/", api.ExpertItemOpenAPI.as_view(), name="api-scoring-item-open"),
    path("scoring/items/<str:key>/quality/", api.QualityAPI.as_view(), name="api-scoring-quality"),
    path("scoring/items/<str:key>/pair/", api.PreferenceAPI.as_view(), name="api-scoring-pair"),
    path("scoring/items/<str:key>/reference/", api.FindingsAPI.as_view(), name="api-scoring-reference"),
    path("trials/<slug:code>/scoring/progress/", api.ProgressAPI.as_view(), name="api-scoring-progress"),
    path("trials/<slug:code>/scoring/build/", api.BuildAPI.as_view(), name="api-scoring-build"),
    path("trials/<slug:code>/scoring/settings/", api.SettingsAPI.as_view(), name="api-scoring-settings"),
    path("trials/<slug:code>/scoring/adjudication/", api.AdjudicationQueueAPI.as_view(),
         name="api-scoring-adjudication"),
    path("trials/<slug:code>/scoring/adjudication/<str:key>/", api.AdjudicateAPI.as_view(),
         name="api-scoring-adjudicate"),
    path("trials/<slug:code>/scoring/results/", api.ResultsAPI.as_view(), name="api-scoring-results"),
]
