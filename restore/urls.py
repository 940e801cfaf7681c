from django.urls import path

from . import views

app_name = "restore"

urlpatterns = [
    path("restore-jobs/", views.job_list, name="list"),
    path("restore-jobs/create/", views.job_create, name="create"),
    path("restore-targets/", views.target_list, name="targets"),
    path("restore-targets/create/", views.target_create, name="target-create"),
]
