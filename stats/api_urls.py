from django.urls import path

from . import api

urlpatterns = [
    path("trials/<slug:code>/analysis/plans/", api.PlanListAPI.as_view(), name="api-analysis-plans"),
    path("trials/<slug:code>/analysis/plans/<int:version>/", api.PlanDetailAPI.as_view(), name="api-analysis-plan"),
    path("trials/<slug:code>/analysis/plans/<int:version>/freeze/", api.PlanFreezeAPI.as_view(),
         name="api-analysis-plan-freeze"),
    path("trials/<slug:code>/analysis/runs/", api.RunListAPI.as_view(), name="api-analysis-runs"),
    path("trials/<slug:code>/analysis/runs/<int:number>/", api.RunDetailAPI.as_view(), name="api-analysis-run"),
    path("trials/<slug:code>/analysis/runs/<int:number>/progress/", api.RunProgressAPI.as_view(),
         name="api-analysis-run-progress"),
    path("trials/<slug:code>/analysis/runs/<int:number>/export/", api.RunExportAPI.as_view(),
         name="api-analysis-run-export"),
    path("trials/<slug:code>/analysis/interim/", api.InterimLookListAPI.as_view(), name="api-analysis-interim-looks"),
    path("trials/<slug:code>/analysis/interim/<int:number>/", api.InterimLookDetailAPI.as_view(),
         name="api-analysis-interim-look"),
]
