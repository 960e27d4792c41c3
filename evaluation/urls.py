from django.urls import path

from . import views

app_name = "evaluation"
urlpatterns = [
    path("t/<slug:code>/analysis/ai-evaluation/", views.page, name="page"),
    path("t/<slug:code>/analysis/ai-evaluation.csv", views.export, name="csv"),
]
