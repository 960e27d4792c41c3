from django.urls import path

from . import views

app_name = "trial"
urlpatterns = [
    path("", views.home, name="home"),
    path("trials/new/", views.trial_create, name="create"),
    path("invitations/<str:token>/", views.accept_invitation, name="accept_invitation"),
    path("t/<slug:code>/", views.trial_detail, name="detail"),
    path("t/<slug:code>/settings/", views.trial_settings, name="settings"),
    path("t/<slug:code>/status/", views.trial_transition, name="transition"),
    path("t/<slug:code>/lock/", views.trial_lock, name="lock"),
    path("t/<slug:code>/unblinding/", views.trial_unblinding, name="unblinding"),
    path("t/<slug:code>/sites/add/", views.site_add, name="site_add"),
    path("t/<slug:code>/members/invite/", views.member_invite, name="member_invite"),
    path("t/<slug:code>/cases/", views.case_list, name="case_list"),
    path("t/<slug:code>/cases/upload/", views.case_upload, name="case_upload"),
    path("t/<slug:code>/cases/<str:case_code>/", views.case_detail, name="case_detail"),
    path("t/<slug:code>/cases/<str:case_code>/<str:kind>.png", views.case_image, name="case_image"),
    path("t/<slug:code>/audit/", views.audit_log, name="audit_log"),
    path("t/<slug:code>/conduct/", views.conduct_page, name="conduct"),
    path("t/<slug:code>/conduct/sites/<slug:site_code>/", views.conduct_site, name="conduct_site"),
    path("t/<slug:code>/conduct/sites/<slug:site_code>/dicom/", views.conduct_site_dicom, name="conduct_site_dicom"),
    path("t/<slug:code>/conduct/readers/<str:pseudonym>/duty/", views.conduct_duty, name="conduct_duty"),
    path("t/<slug:code>/conduct/readers/<str:pseudonym>/withdraw/", views.conduct_withdraw, name="conduct_withdraw"),
    path("t/<slug:code>/conduct/readers/<str:pseudonym>/roster/", views.conduct_roster, name="conduct_roster"),
    path("t/<slug:code>/conduct/deviations/", views.conduct_deviation, name="conduct_deviation"),
    path("t/<slug:code>/hospital/", views.hospital_page, name="hospital"),
    path("t/<slug:code>/hospital/sites/<slug:site_code>/destinations/", views.hospital_destinations,
         name="hospital_destinations"),
    path("t/<slug:code>/hospital/sites/<slug:site_code>/tokens/", views.hospital_token_issue,
         name="hospital_token_issue"),
    path("t/<slug:code>/hospital/tokens/<int:token_id>/revoke/", views.hospital_token_revoke,
         name="hospital_token_revoke"),
    path("t/<slug:code>/hospital/deliveries/<int:delivery_id>/resend/", views.hospital_resend, name="hospital_resend"),
    path("t/<slug:code>/hospital/releases/<str:case_code>/v<int:version>.fhir.json", views.hospital_fhir_download,
         name="hospital_fhir_download"),
]
