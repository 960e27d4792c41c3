from django.urls import path

from . import api

urlpatterns = [
    path("trials/", api.TrialListAPI.as_view(), name="api-trials"),
    path("trials/<slug:code>/", api.TrialDetailAPI.as_view(), name="api-trial"),
    path("trials/<slug:code>/transition/", api.TrialTransitionAPI.as_view(), name="api-trial-transition"),
    path("trials/<slug:code>/lock/", api.TrialLockAPI.as_view(), name="api-trial-lock"),
    path("trials/<slug:code>/unblinding/", api.TrialUnblindingAPI.as_view(), name="api-trial-unblinding"),
    path("trials/<slug:code>/sites/", api.SiteListAPI.as_view(), name="api-sites"),
    path("trials/<slug:code>/members/", api.MemberListAPI.as_view(), name="api-members"),
    path("trials/<slug:code>/cases/", api.CaseListAPI.as_view(), name="api-cases"),
    path("trials/<slug:code>/cases/<str:case_code>/", api.CaseDetailAPI.as_view(), name="api-case"),
    path("trials/<slug:code>/allocations/", api.AllocationListAPI.as_view(), name="api-allocations"),
]
