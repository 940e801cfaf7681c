"""Operators' admin for restore targets (registered through the service) and restore jobs (read-only)."""

from django.contrib import admin

from console.adminsupport import ServiceAdminForm, ServiceModelAdmin

from . import services
from .models import RestoreJob, RestoreTarget


class RestoreTargetForm(ServiceAdminForm):
    class Meta:
        model = RestoreTarget
        fields = ("account", "region", "kind", "name", "location", "prefix", "network")

    def run_service(self, cleaned):
        return services.create_restore_target(actor=self.actor, **{f: cleaned[f] for f in self.Meta.fields})


@admin.register(RestoreTarget)
class RestoreTargetAdmin(ServiceModelAdmin):
    form = RestoreTargetForm
    list_display = ("name", "kind", "account", "region", "location", "network")
    list_filter = ("kind", "region")
    actions = None

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RestoreJob)
class RestoreJobAdmin(ServiceModelAdmin):
    list_display = ("pk", "point_label", "target", "status", "files_done", "bytes_written", "created")
    list_filter = ("status",)
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
