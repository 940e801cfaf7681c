"""Operators' admin for regions, accounts, members, resource groups and the audit log."""

from django.contrib import admin

from . import services
from .adminsupport import ServiceAdminForm, ServiceModelAdmin
from .models import Account, AuditLog, Membership, Region, ResourceGroup


class RegionForm(ServiceAdminForm):
    class Meta:
        model = Region
        fields = services.REGION_FIELDS

    def run_service(self, cleaned):
        for field in services.REGION_FIELDS:
            setattr(self.instance, field, cleaned[field])
        return services.save_region(actor=self.actor, region=self.instance)


@admin.register(Region)
class RegionAdmin(ServiceModelAdmin):
    form = RegionForm
    account_path = None
    list_display = (
        "code",
        "name",
        "supports_zrs",
        "supports_cross_region",
        "is_enabled",
        "store_backend",
        "store_location",
    )
    list_filter = ("is_enabled", "supports_zrs")
    search_fields = ("code", "name")
    actions = None

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False  # disable a region instead; its vaults keep it


class AccountForm(ServiceAdminForm):
    class Meta:
        model = Account
        fields = ("slug", "name")

    def run_service(self, cleaned):
        if self.instance.pk is None:
            return services.create_account(actor=self.actor, slug=cleaned["slug"], name=cleaned["name"])
        return services.rename_account(actor=self.actor, account=self.instance, name=cleaned["name"])


@admin.register(Account)
class AccountAdmin(ServiceModelAdmin):
    form = AccountForm
    account_path = None
    list_display = ("slug", "name", "created")
    search_fields = ("slug", "name")
    actions = None

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows if request.user.is_superuser else rows.filter(pk__in=self.user_account_ids(request))

    def get_readonly_fields(self, request, obj=None):
        return ("slug",) if obj else ()

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipForm(ServiceAdminForm):
    class Meta:
        model = Membership
        fields = ("user", "account", "role")

    def run_service(self, cleaned):
        return services.add_member(
            actor=self.actor, account=cleaned["account"], user=cleaned["user"], role=cleaned["role"]
        )


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    form = MembershipForm
    list_display = ("user", "account", "role")
    list_filter = ("role",)
    actions = None

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)

    def delete_model(self, request, obj):
        services.remove_member(actor=request.user, membership=obj)


class ResourceGroupForm(ServiceAdminForm):
    class Meta:
        model = ResourceGroup
        fields = ("account", "name")

    def run_service(self, cleaned):
        return services.create_resource_group(actor=self.actor, account=cleaned["account"], name=cleaned["name"])


@admin.register(ResourceGroup)
class ResourceGroupAdmin(ServiceModelAdmin):
    form = ResourceGroupForm
    list_display = ("name", "account", "is_default")
    list_filter = ("is_default",)
    actions = None

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ServiceModelAdmin):
    """Rule A3: read-only, for everyone."""

    list_display = ("created", "actor_name", "account", "region_code", "action", "object_type", "object_id", "outcome")
    list_filter = ("outcome", "action", "region_code")
    search_fields = ("object_id", "actor_name", "action")
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
