from django.urls import path

from . import views

app_name = "scoring"
urlpatterns = [
    path("t/<slug:code>/score/", views.worklist_page, name="worklist"),
    path("t/<slug:code>/score/<str:key>/", views.item_page, name="item"),
    path("t/<slug:code>/score/<str:key>/<str:kind>.png", views.item_image, name="item_image"),
    path("t/<slug:code>/score/<str:key>/<int:position>/<str:kind>.png", views.item_image, name="item_study_image"),
    path("t/<slug:code>/adjudicate/", views.adjudication_page, name="adjudication"),
    path("t/<slug:code>/adjudicate/<str:key>/", views.adjudicate_page, name="adjudicate"),
    path("t/<slug:code>/adjudicate/<str:key>/<str:kind>.png", views.adjudication_image, name="adjudication_image"),
    path("t/<slug:code>/adjudicate/<str:key>/<int:position>/<str:kind>.png", views.adjudication_image,
         name="adjudication_study_image"),
    path("t/<slug:code>/scoring/", views.progress_page, name="progress"),
    path("t/<slug:code>/scoring/build/", views.build_now, name="build"),
    path("t/<slug:code>/scoring/settings/", views.settings_page, name="settings"),
]
