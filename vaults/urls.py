from django.urls import path

from . import views

app_name = "vaults"

urlpatterns = [
    path("", views.vault_list, name="list"),
    path("create/", views.vault_create, name="create"),
    path("kms-key-field/", views.kms_key_field, name="kms-key-field"),
    path("<str:vault_id>/", views.vault_detail, name="detail"),
    path("<str:vault_id>/status/", views.vault_status, name="status"),
    path("<str:vault_id>/delete/", views.vault_delete, name="delete"),
    path("<str:vault_id>/retry/", views.vault_retry, name="retry"),
    path("<str:vault_id>/lock/", views.vault_lock, name="lock"),
    path("<str:vault_id>/archiving/", views.vault_archiving, name="archiving"),
    path("<str:vault_id>/verify/", views.vault_verify, name="verify"),
    path("<str:vault_id>/verify/report/", views.vault_verify_report, name="verify-report"),
    path("<str:vault_id>/points/<str:point_id>/bring-back/", views.point_bring_back, name="point-bring-back"),
]
