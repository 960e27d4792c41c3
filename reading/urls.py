from django.urls import path

from . import views

app_name = "reading"
urlpatterns = [
    path("t/<slug:code>/read/", views.worklist_page, name="worklist"),
    path("t/<slug:code>/read/<int:read_id>/", views.read_page, name="read"),
    path("t/<slug:code>/read/duty/", views.duty, name="duty"),
    path("r/<int:read_id>/<str:kind>.png", views.read_image, name="read_image"),
    path("r/<int:read_id>/<int:position>/<str:kind>.png", views.study_image, name="study_image"),
    path("t/<slug:code>/signoff/", views.signoff_queue, name="signoff_queue"),
    path("t/<slug:code>/signoff/<int:report_id>/", views.signoff_report, name="signoff_report"),
    path("t/<slug:code>/signoff/record/<str:case_code>/", views.write_record, name="write_record"),
    path("t/<slug:code>/signoff/record/<str:case_code>/<int:position>/<str:kind>.png", views.record_image,
         name="record_image"),
    path("t/<slug:code>/signoff/<int:report_id>/image.png", views.senior_image, name="senior_image"),
    path("t/<slug:code>/signoff/<int:report_id>/<int:position>/<str:kind>.png", views.senior_study_image,
         name="senior_study_image"),
    path("t/<slug:code>/reading/", views.dashboard_page, name="dashboard"),
    path("t/<slug:code>/reading/route/", views.route_now, name="route"),
]
