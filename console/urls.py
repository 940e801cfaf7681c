from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .overview import policies as policy_views
from .overview import views as overview_views

region_pages = [
    path("policies/", policy_views.policy_center, name="policy-center"),
    path("policies/create/", policy_views.policy_create, name="policy-create"),
    path("policies/<str:policy_id>/run/", policy_views.policy_run, name="policy-run"),
    path("policies/<str:policy_id>/pause/", policy_views.policy_pause, name="policy-pause"),
    path("policies/<str:policy_id>/delete/", policy_views.policy_delete, name="policy-delete"),
    path("usage/", overview_views.usage, name="usage"),
    path("audit-log/", views.audit_log, name="audit-log"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/switch/", views.switch_account, name="switch-account"),
    path("regions/<slug:region>/vaults/", include("vaults.urls")),
    path("regions/<slug:region>/", include("vaults.backup_urls")),
    path("regions/<slug:region>/", include("replication.urls")),
    path("regions/<slug:region>/", include("restore.urls")),
    path("regions/<slug:region>/", include((region_pages, "console"))),
    path("admin/", admin.site.urls),
]
