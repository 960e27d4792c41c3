"""DICOMweb (PS3.18) endpoints: STOW-RS, by which a hospital system sends images to one site."""
from django.urls import path

from . import dicomweb_views

app_name = "dicomweb"
urlpatterns = [
    path("studies", dicomweb_views.store_instances, name="stow"),
    path("studies/<str:study_uid>", dicomweb_views.store_instances, name="stow_study"),
]
