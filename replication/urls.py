from django.urls import path

from . import views

app_name = "replication"

urlpatterns = [
    path("vaults/<str:vault_id>/replication/", views.initiate, name="initiate"),
    path("vaults/<str:vault_id>/replication/stop/", views.stop, name="stop"),
    path("vaults/<str:vault_id>/replication/progress/", views.progress, name="progress"),
]
