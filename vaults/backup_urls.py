from django.urls import path

from . import backup_views

app_name = "backups"

urlpatterns = [
    path("backup-jobs/", backup_views.job_list, name="list"),
    path("backup-sources/", backup_views.source_list, name="sources"),
    path("backup-sources/create/", backup_views.source_create, name="source-create"),
    path("backup-sources/buckets/register/", backup_views.bucket_register, name="bucket-register"),
    path("vaults/<str:vault_id>/backup/", backup_views.backup_start, name="start"),
    path("vaults/<str:vault_id>/points/<str:point_id>/delete/", backup_views.point_delete, name="point-delete"),
]
