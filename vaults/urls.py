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
]
