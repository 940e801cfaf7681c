"""Backup vaults and the KMS keys that can protect them.

Backup points, chunks and jobs (the data plane) will live here too; key
wrapping is in `vaults.keys`, object stores in `vaults.objectstore`.
"""

import secrets

from django.db import models

from console.models import Account, Region, ResourceGroup


def new_vault_id():
    return "v-" + secrets.token_hex(10)


class VaultType(models.TextChoices):
    """Rule V1."""

    GENERAL = "general", "General Backup"
    REPLICATION_TARGET = "replication-target", "Replication Target"
    ARCHIVE = "archive", "Archive"
    DATABASE = "database", "Database Backup"
    CONTAINER = "container", "Container Backup"
    OSS_TRIAL = "oss-trial", "OSS Backup (30-day free trial)"
    NAS_TRIAL = "nas-trial", "NAS Backup (30-day free trial)"
    TABLESTORE_TRIAL = "tablestore-trial", "Tablestore Backup (30-day free trial)"


class VaultStatus(models.TextChoices):
    """Rule V2."""

    INITIALIZING = "initializing", "Initializing"
    NORMAL = "normal", "Normal"
    ERROR = "error", "Error"
    UNKNOWN = "unknown", "Unknown"


class EncryptionMethod(models.TextChoices):
    """Rule V4."""

    CLOUD_BACKUP_MANAGED = "cloud-backup-managed", "Cloud Backup-managed"
    KMS = "kms", "KMS"


class KmsKey(models.Model):
    """A customer key in a region's KMS; only its id is kept here, never key material."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="kms_keys")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="kms_keys")
    key_id = models.CharField("KMS KeyId", max_length=128)
    alias = models.CharField(max_length=128)
    provider = models.CharField(max_length=16, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["alias"]
        verbose_name = "KMS key"
        constraints = [
            models.UniqueConstraint(fields=["region", "key_id"], name="unique_kms_key_id_per_region"),
            models.UniqueConstraint(fields=["account", "region", "alias"], name="unique_kms_alias"),
        ]

    def __str__(self):
        return f"{self.alias} ({self.key_id})"


class Vault(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_vault_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="vaults")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="vaults")
    resource_group = models.ForeignKey(ResourceGroup, on_delete=models.PROTECT, related_name="vaults")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    vault_type = models.CharField("type", max_length=24, choices=VaultType.choices, default=VaultType.GENERAL)
    status = models.CharField(max_length=16, choices=VaultStatus.choices, default=VaultStatus.INITIALIZING)
    status_reason = models.CharField(max_length=500, blank=True)
    redundancy = models.CharField(max_length=3, editable=False)
    encryption_method = models.CharField(
        "Vault Encryption Method",
        max_length=24,
        choices=EncryptionMethod.choices,
        default=EncryptionMethod.CLOUD_BACKUP_MANAGED,
    )
    kms_key = models.ForeignKey(
        KmsKey, null=True, blank=True, on_delete=models.PROTECT, related_name="vaults", verbose_name="KMS KeyId"
    )
    wrapped_data_key = models.BinaryField(editable=False)
    data_size = models.BigIntegerField("Storage Vault Data Size", default=0)
    backup_lock = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "region", "name"], name="unique_vault_name_per_region"),
            models.CheckConstraint(
                condition=models.Q(encryption_method="kms", kms_key__isnull=False)
                | models.Q(encryption_method="cloud-backup-managed", kms_key__isnull=True),
                name="kms_key_iff_kms_encryption",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def storage_prefix(self):
        """The vault's storage area inside its region's object store."""
        return f"vaults/{self.id}/"
