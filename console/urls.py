from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .overview import views as overview_views

region_pages = [
    path(
        "policies/",
        views.section,
        name="policy-center",
        kwargs={"title": "Policy Center", "blurb": "Backup policies of this region will be listed here."},
    ),
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
