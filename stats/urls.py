from django.urls import path

from . import views

app_name = "stats"
urlpatterns = [
    path("t/<slug:code>/analysis/", views.analysis_home, name="home"),
    path("t/<slug:code>/analysis/plan/", views.plan_edit, name="plan_edit"),
    path("t/<slug:code>/analysis/plan/<int:version>/freeze/", views.plan_freeze, name="plan_freeze"),
    path("t/<slug:code>/analysis/plan/<int:version>.json", views.plan_json, name="plan_json"),
    path("t/<slug:code>/analysis/power/", views.power_page, name="power"),
    path("t/<slug:code>/analysis/runs/", views.run_start, name="run_start"),
    path("t/<slug:code>/analysis/runs/<int:number>/", views.run_page, name="run"),
    path("t/<slug:code>/analysis/runs/<int:number>/report.html", views.run_report_file, name="report_file"),
    path("t/<slug:code>/analysis/runs/<int:number>/export.zip", views.run_export, name="export"),
    path("t/<slug:code>/analysis/runs/<int:number>/plots/<str:name>.png", views.run_plot, name="plot"),
    path("t/<slug:code>/analysis/interim/", views.interim_page, name="interim"),
    path("t/<slug:code>/analysis/interim/take/<str:kind>/", views.interim_take, name="interim_take"),
    path("t/<slug:code>/analysis/interim/<int:number>/", views.interim_look_page, name="interim_look"),
]
