"""Operators' admin for restore targets (registered through the service) and restore jobs (read-only)."""

from django.contrib import admin

from console.adminsupport import ServiceAdminForm, ServiceModelAdmin
from console.models import Account, Region

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

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "account":
            kwargs["queryset"] = Account.objects.filter(pk__in=self.user_account_ids(request))
        elif db_field.name == "region":
            kwargs["queryset"] = Region.objects.filter(is_enabled=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

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
