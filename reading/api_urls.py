from django.urls import path

from . import api

urlpatterns = [
    path("trials/<slug:code>/worklist/", api.WorklistAPI.as_view(), name="api-worklist"),
    path("reads/<int:read_id>/", api.ReadAPI.as_view(), name="api-read"),
    path("reads/<int:read_id>/events/", api.ReadEventAPI.as_view(), name="api-read-events"),
    path("reads/<int:read_id>/autosave/", api.AutosaveAPI.as_view(), name="api-read-autosave"),
    path("reads/<int:read_id>/submit/", api.SubmitAPI.as_view(), name="api-read-submit"),
    path("reads/<int:read_id>/correct/", api.CorrectAPI.as_view(), name="api-read-correct"),
    path("trials/<slug:code>/signoff/", api.SignoffQueueAPI.as_view(), name="api-signoff"),
    path("trials/<slug:code>/signoff/<int:report_id>/sign/", api.SignAPI.as_view(), name="api-sign"),
]
