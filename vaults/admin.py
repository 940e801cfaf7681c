"""Operators' admin for vaults and KMS keys; every change goes through `vaults.services`."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from console.adminsupport import ServiceAdminForm, ServiceModelAdmin
from console.models import Account, Region, ResourceGroup

from . import services
from .models import BackupJob, BackupPoint, BackupSource, KmsKey, OssBucket, RemovedVaultArea, Vault


class VaultAddForm(ServiceAdminForm):
    class Meta:
        model = Vault
        fields = (
            "account",
            "region",
            "name",
            "description",
            "resource_group",
            "vault_type",
            "encryption_method",
            "kms_key",
        )

    def run_service(self, cleaned):
        return services.create_vault(
            actor=self.actor,
            account=cleaned["account"],
            region=cleaned["region"],
            name=cleaned["name"],
            description=cleaned["description"],
            resource_group=cleaned["resource_group"],
            vault_type=cleaned["vault_type"],
            encryption_method=cleaned["encryption_method"],
            kms_key=cleaned["kms_key"],
        )


class VaultChangeForm(ServiceAdminForm):
    """Only what may change after creation; the key, type and region never do (rule V4)."""

    class Meta:
        model = Vault
        fields = ("name", "description", "resource_group")

    def run_service(self, cleaned):
        return services.update_vault(
            actor=self.actor,
            vault=self.instance,
            name=cleaned["name"],
            description=cleaned["description"],
            resource_group=cleaned["resource_group"],
        )


@admin.register(Vault)
class VaultAdmin(ServiceModelAdmin):
    list_display = (
        "name",
        "id",
        "account",
        "region",
        "vault_type",
        "status",
        "redundancy",
        "encryption_method",
        "data_size",
        "backup_lock",
    )
    list_filter = ("vault_type", "status", "encryption_method", "region")
    search_fields = ("name", "id")
    list_select_related = ("account", "region")
    readonly_fields = (
        "id",
        "account",
        "region",
        "vault_type",
        "status",
        "status_reason",
        "redundancy",
        "encryption_method",
        "kms_key",
        "data_size",
        "backup_lock",
        "created",
        "updated",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = VaultChangeForm if obj else VaultAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(VaultAddForm.Meta.fields)
        return ["name", "description", "resource_group", *self.readonly_fields]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        accounts = self.user_account_ids(request)
        if db_field.name == "account":
            kwargs["queryset"] = Account.objects.filter(pk__in=accounts)
        elif db_field.name == "region":
            kwargs["queryset"] = Region.objects.filter(is_enabled=True)
        elif db_field.name == "resource_group":
            kwargs["queryset"] = ResourceGroup.objects.filter(account__in=accounts)
        elif db_field.name == "kms_key":
            kwargs["queryset"] = KmsKey.objects.filter(account__in=accounts).select_related("region")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and services.deletion_refusal(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        """The admin's own confirmation page is the explicit confirmation of rule V7."""
        try:
            services.delete_vault(actor=request.user, vault=obj, confirmation=obj.name)
        except ValidationError as exc:
            self.message_user(request, f"{obj}: {' '.join(exc.messages)}", messages.ERROR)

    def delete_queryset(self, request, queryset):
        for vault in queryset:
            self.delete_model(request, vault)


class KmsKeyForm(ServiceAdminForm):
    class Meta:
        model = KmsKey
        fields = ("account", "region", "alias")

    def run_service(self, cleaned):
        return services.create_kms_key(
            actor=self.actor, account=cleaned["account"], region=cleaned["region"], alias=cleaned["alias"]
        )


@admin.register(KmsKey)
class KmsKeyAdmin(ServiceModelAdmin):
    form = KmsKeyForm
    list_display = ("alias", "key_id", "account", "region", "provider", "created")
    list_filter = ("region", "provider")
    search_fields = ("alias", "key_id")
    actions = None

    def get_readonly_fields(self, request, obj=None):
        return ("account", "region", "alias", "key_id", "provider", "created") if obj else ()

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # a key may protect vault data; keys are retired in the KMS itself


class OssBucketForm(ServiceAdminForm):
    """An operator assigns a bucket to an account (rule T2); the service's store credentials serve it."""

    class Meta:
        model = OssBucket
        fields = ("account", "region", "name")

    def run_service(self, cleaned):
        return services.assign_bucket(actor=self.actor, **{f: cleaned[f] for f in self.Meta.fields})


@admin.register(OssBucket)
class OssBucketAdmin(ServiceModelAdmin):
    form = OssBucketForm
    list_display = ("name", "region", "account", "access_key_id", "assigned_by_operator", "created")
    list_filter = ("region",)
    actions = None

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)


class BackupSourceForm(ServiceAdminForm):
    class Meta:
        model = BackupSource
        fields = ("account", "region", "source_type", "name", "path", "bucket", "prefix", "retain_at_least_one")

    def run_service(self, cleaned):
        return services.create_backup_source(actor=self.actor, **{f: cleaned[f] for f in self.Meta.fields})


@admin.register(BackupSource)
class BackupSourceAdmin(ServiceModelAdmin):
    form = BackupSourceForm
    list_display = ("name", "source_type", "account", "region", "path", "bucket", "retain_at_least_one")
    list_filter = ("source_type", "region")
    actions = None

    def has_change_permission(self, request, obj=None):
        return False if obj else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False


class PointRetentionForm(ServiceAdminForm):
    """Only the expiry can change, through the service (rule L1: never shortened under lock)."""

    class Meta:
        model = BackupPoint
        fields = ("expires",)

    def run_service(self, cleaned):
        return services.set_point_retention(actor=self.actor, point=self.instance, expires=cleaned["expires"])


@admin.register(BackupPoint)
class BackupPointAdmin(ServiceModelAdmin):
    form = PointRetentionForm
    account_path = "vault__account"
    list_display = ("id", "vault", "source_type", "created", "expires", "tier", "files", "size")
    list_filter = ("tier", "source_type")
    search_fields = ("id", "vault__id", "vault__name")
    list_select_related = ("vault",)
    readonly_fields = (
        "id",
        "vault",
        "source",
        "source_type",
        "source_location",
        "created",
        "tier",
        "standard_until",
        "files",
        "size",
        "stored_bytes",
        "manifest_key",
        "manifest_size",
    )
    actions = None

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and services.point_delete_refusal(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            services.delete_point(actor=request.user, point=obj)
        except ValidationError as exc:
            self.message_user(request, f"{obj}: {' '.join(exc.messages)}", messages.ERROR)


@admin.register(BackupJob)
class BackupJobAdmin(ServiceModelAdmin):
    list_display = ("pk", "vault", "source", "status", "files_done", "bytes_done", "bytes_stored", "created")
    list_filter = ("status",)
    list_select_related = ("vault", "source")
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RemovedVaultArea)
class RemovedVaultAreaAdmin(admin.ModelAdmin):
    """Deleted vaults whose data is still being removed from their store (superusers: it names no account)."""

    list_display = ("vault_id", "region", "prefix", "deleted", "attempts", "error")
    actions = None

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
