"""Vault actions: create, initialize storage, update, delete, backup lock, KMS keys.

One function per user action; the console, the admin, the commands and the
tasks all call these, so each rule below is checked in exactly one place.
"""

import json
import logging

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from console import jobs
from console.jobs import QUEUED_STALE, send_again
from console.models import Account, ResourceGroup
from console.services import audit_refusals, record_audit

from ..dataplane.keys import KeyProviderError, kms_provider, new_data_key, vault_keys, wrap_data_key
from ..dataplane.objectstore import ObjectStoreError, region_store, store_config
from ..models import (
    BackupJob,
    Chunk,
    EncryptionMethod,
    KmsKey,
    RemovedVaultArea,
    Vault,
    VaultStatus,
    VaultType,
    new_vault_id,
)
from .gc import ORPHAN_AGE
from .hooks import DELETE_GUARDS
from .lifecycle import lock_refusal

log = logging.getLogger(__name__)

NAME_MAX = 64
DESCRIPTION_MAX = 255
MAX_TARGETS_PER_REGION = 5  # rule R4: Replication Target vaults of an account in one region


def _clean_name(name, what="vault"):
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": f"Enter a {what} name."})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": f"The name has {len(name)} characters; at most {NAME_MAX} are allowed."})
    if any(ord(c) < 32 for c in name):
        raise ValidationError({"name": "The name cannot contain control characters."})
    return name


def create_vault(
    *,
    actor,
    account,
    region,
    name,
    description="",
    resource_group=None,
    vault_type=VaultType.GENERAL,
    encryption_method=EncryptionMethod.CLOUD_BACKUP_MANAGED,
    kms_key=None,
    chunk_id_key=None,
):
    """Rules V1, V3, V4, T2: a new vault with its own wrapped data key; storage follows in a task.

    The one place a vault gets its KMS key: only a key of the vault's own account and region.
    """
    with audit_refusals("create_vault", actor=actor, account=account, region_code=region.code, object_type="vault"):
        with transaction.atomic():
            vault = build_vault(
                account=account,
                region=region,
                name=name,
                description=description,
                resource_group=resource_group,
                vault_type=vault_type,
                encryption_method=encryption_method,
                kms_key=kms_key,
                chunk_id_key=chunk_id_key,
            )
            vault.save(force_insert=True)
            record_audit(
                actor=actor,
                action="create_vault",
                object_type="vault",
                object_id=vault.id,
                account=account,
                region_code=region.code,
                name=vault.name,
                type=vault.vault_type,
                encryption=vault.encryption_method,
                kms_key=vault.kms_key.key_id if vault.kms_key else "",
            )
            transaction.on_commit(lambda: _enqueue_initialization(vault.id))
    return vault


def _check_target_quota(account, region):
    """Rule R4, counting the vault being created; the account's row lock makes creations take turns."""
    Account.objects.select_for_update().filter(pk=account.pk).first()
    count = Vault.objects.filter(account=account, region=region, vault_type=VaultType.REPLICATION_TARGET).count()
    if count >= MAX_TARGETS_PER_REGION:
        raise ValidationError(
            f"The account already has {count} Replication Target vaults in {region.name}; "
            f"at most {MAX_TARGETS_PER_REGION} are allowed (rule R4)."
        )


def build_vault(
    *, account, region, name, description, resource_group, vault_type, encryption_method, kms_key, chunk_id_key=None
):
    """A new vault checked (rules V1, V3, V4, T2) and given its wrapped keys, not saved yet: `create_vault` saves
    and audits one; `manage.py seed_scale` saves many at once."""
    errors = {}
    if reason := region.new_work_refusal:
        errors["region"] = reason
    try:
        name = _clean_name(name)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    else:
        if Vault.objects.filter(account=account, region=region, name=name).exists():
            errors["name"] = f"A vault named {name!r} already exists in {region.name}."
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = f"The description can have at most {DESCRIPTION_MAX} characters."
    if resource_group is None:
        resource_group = ResourceGroup.objects.filter(account=account, is_default=True).first()
    if resource_group is None or resource_group.account_id != account.pk:
        errors["resource_group"] = "Choose a resource group of this account."
    if vault_type not in VaultType.values:
        errors["vault_type"] = f"Unknown vault type {vault_type!r}."
    if kms_key is not None and kms_key.account_id != account.pk:
        # rule T2: another account's key is refused whatever the method, not silently dropped
        errors["kms_key"] = f"The KMS key must belong to this account in {region.name}."
    if encryption_method == EncryptionMethod.KMS:
        if kms_key is None:
            errors["kms_key"] = "Choose a KMS KeyId for KMS encryption."
        elif kms_key.region_id != region.pk:
            errors["kms_key"] = f"The KMS key must belong to this account in {region.name}."
    elif encryption_method == EncryptionMethod.CLOUD_BACKUP_MANAGED:
        kms_key = None
    else:
        errors["encryption_method"] = f"Unknown encryption method {encryption_method!r}."
    if errors:
        raise ValidationError(errors)
    if vault_type == VaultType.REPLICATION_TARGET:
        _check_target_quota(account, region)

    vault_id = new_vault_id()
    try:
        wrapped = wrap_data_key(data_key=new_data_key(), vault_id=vault_id, region_code=region.code, kms_key=kms_key)
        wrapped_id_key = wrap_data_key(
            data_key=chunk_id_key or new_data_key(),
            vault_id=vault_id,
            region_code=region.code,
            kms_key=kms_key,
            purpose="chunk-id",
        )
    except KeyProviderError as exc:
        raise ValidationError({"kms_key" if kms_key else "encryption_method": str(exc)}) from exc
    return Vault(
        id=vault_id,
        account=account,
        region=region,
        resource_group=resource_group,
        name=name,
        description=description,
        vault_type=vault_type,
        status=VaultStatus.INITIALIZING,
        redundancy=region.redundancy,
        encryption_method=encryption_method,
        kms_key=kms_key,
        wrapped_data_key=wrapped,
        wrapped_chunk_id_key=wrapped_id_key,
    )


def _enqueue_initialization(vault_id):
    try:  # by the task's name: the tasks module imports the services, not the other way round
        current_app.send_task("vaults.tasks.initialize_vault_storage_task", args=(vault_id,))
    except Exception:  # the broker is down: the vault stays Initializing and says why
        log.exception("Cannot enqueue storage initialization of %s", vault_id)
        Vault.objects.filter(pk=vault_id, status=VaultStatus.INITIALIZING).update(
            status_reason="Waiting for the task queue: the broker could not be reached."
        )


def requeue_stalled_initializations():
    """Vaults still Initializing after QUEUED_STALE lost their task's message: it is sent again (once per period)."""
    stale = timezone.now() - QUEUED_STALE
    stalled = Vault.objects.filter(status=VaultStatus.INITIALIZING, updated__lt=stale)
    return send_again(stalled, "updated", _enqueue_initialization)


def _transition(vault_id, *, allowed_from, to, reason=""):
    """The one place a vault's status changes; returns None when the vault is not in an allowed state."""
    vault = Vault.objects.select_for_update().select_related("region").filter(pk=vault_id).first()
    if vault is None or vault.status not in allowed_from:
        return None
    vault.status = to
    vault.status_reason = reason[:500]
    vault.save(update_fields=["status", "status_reason", "updated"])
    return vault


def initialize_vault_storage(vault_id):
    """Create the vault's storage area in its region's store: Initializing -> Normal, or Error with the reason."""
    vault = Vault.objects.select_related("region").filter(pk=vault_id, status=VaultStatus.INITIALIZING).first()
    if vault is None:
        return None  # already done, deleted, or not waiting: running twice is harmless
    store = region_store(vault.region)
    try:
        store.ensure_ready()
        marker = {"vault": vault.id, "account": vault.account_id, "region": vault.region.code}
        store.put(vault.storage_prefix + "vault.json", json.dumps(marker).encode())
    except ObjectStoreError as exc:
        with transaction.atomic():
            vault = _transition(
                vault_id, allowed_from={VaultStatus.INITIALIZING}, to=VaultStatus.ERROR, reason=str(exc)
            )
            if vault:
                record_audit(
                    actor=None,
                    action="initialize_vault",
                    object_type="vault",
                    object_id=vault.id,
                    account=vault.account,
                    region_code=vault.region.code,
                    outcome="failed",
                    reason=str(exc),
                )
        return vault
    with transaction.atomic():
        vault = _transition(vault_id, allowed_from={VaultStatus.INITIALIZING}, to=VaultStatus.NORMAL)
        if vault:
            record_audit(
                actor=None,
                action="initialize_vault",
                object_type="vault",
                object_id=vault.id,
                account=vault.account,
                region_code=vault.region.code,
                store=store_config(vault.region)[0],  # the kind only: where the store lives is the operator's
            )
    return vault


def retry_vault_initialization(*, actor, vault):
    """An Error vault whose storage could not be created tries again."""
    with audit_refusals(
        "retry_vault_initialization",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="vault",
        object_id=vault.id,
    ):
        if reason := vault.region.new_work_refusal:
            raise ValidationError(reason)
        with transaction.atomic():
            if _transition(vault.id, allowed_from={VaultStatus.ERROR}, to=VaultStatus.INITIALIZING) is None:
                raise ValidationError("Only a vault in Error can retry its initialization.")
            record_audit(
                actor=actor,
                action="retry_vault_initialization",
                object_type="vault",
                object_id=vault.id,
                account=vault.account,
                region_code=vault.region.code,
            )
            transaction.on_commit(lambda: _enqueue_initialization(vault.id))
    vault.refresh_from_db()
    return vault


def update_vault(*, actor, vault, name=None, description=None, resource_group=None):
    """Name, description and resource group may change; type, region and key never do (rule V4)."""
    with audit_refusals(
        "update_vault",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="vault",
        object_id=vault.id,
    ):
        with transaction.atomic():
            locked = Vault.objects.select_for_update().get(pk=vault.pk)
            changed = {}
            if name is not None:
                name = _clean_name(name)
                if name != locked.name:
                    if Vault.objects.filter(account=locked.account_id, region=locked.region_id, name=name).exists():
                        raise ValidationError({"name": f"A vault named {name!r} already exists in this region."})
                    changed["name"] = name
            if description is not None:
                description = description.strip()
                if len(description) > DESCRIPTION_MAX:
                    raise ValidationError({"description": f"At most {DESCRIPTION_MAX} characters."})
                if description != locked.description:
                    changed["description"] = description
            if resource_group is not None and resource_group.pk != locked.resource_group_id:
                if resource_group.account_id != locked.account_id:
                    raise ValidationError({"resource_group": "Choose a resource group of this account."})
                changed["resource_group"] = resource_group
            for field, value in changed.items():
                setattr(locked, field, value)
            if changed:
                locked.save()
                record_audit(
                    actor=actor,
                    action="update_vault",
                    object_type="vault",
                    object_id=locked.id,
                    account=locked.account,
                    region_code=vault.region.code,
                    changed={k: str(v) for k, v in changed.items()},
                )
    return locked


def deletion_refusal(vault):
    """Rule V7: why this vault cannot be deleted now, or None."""
    if vault.backup_lock:
        return "Backup lock is on: the vault's backup points cannot be deleted before they expire."
    if jobs.active(BackupJob.objects.filter(vault=vault)).exists():
        return "A backup job of this vault is queued or running: delete the vault once it has finished."
    for guard in DELETE_GUARDS:
        reason = guard(vault)
        if reason:
            return reason
    return None


def delete_vault(*, actor, vault, confirmation):
    """Rule V7: typed confirmation, guards, then the data in the store and the rows go."""
    with audit_refusals(
        "delete_vault",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="vault",
        object_id=vault.id,
    ):
        with transaction.atomic():
            locked = Vault.objects.select_for_update().select_related("region", "account").get(pk=vault.pk)
            if (confirmation or "").strip() != locked.name:
                raise ValidationError({"confirmation": f"Type the vault's name, {locked.name}, to confirm."})
            reason = deletion_refusal(locked)
            if reason:
                raise ValidationError(reason)
            area = RemovedVaultArea.objects.create(
                vault_id=locked.id, region=locked.region, prefix=locked.storage_prefix
            )
            transaction.on_commit(lambda: clear_removed_area(area))
            record_audit(
                actor=actor,
                action="delete_vault",
                object_type="vault",
                object_id=locked.id,
                account=locked.account,
                region_code=locked.region.code,
                name=locked.name,
            )
            locked.points.all().delete()  # their chunk references first: the index rows go with the vault
            locked.delete()


def clear_removed_area(area, settle=None):
    """Remove a deleted vault's objects; the area is forgotten once a removal `settle` after the deletion worked.

    A failure is kept on the area and the hourly garbage collection tries again.
    """
    settle = ORPHAN_AGE if settle is None else settle
    try:
        region_store(area.region).delete_prefix(area.prefix)
    except ObjectStoreError as exc:
        log.warning("Data of deleted vault %s not removed yet: %s", area.vault_id, exc)
        RemovedVaultArea.objects.filter(pk=area.pk).update(attempts=F("attempts") + 1, error=str(exc))
        return False
    if timezone.now() - area.deleted >= settle:
        RemovedVaultArea.objects.filter(pk=area.pk).delete()
    else:
        RemovedVaultArea.objects.filter(pk=area.pk).update(error="")
    return True


def clear_removed_areas():
    """The hourly pass over deleted vaults' areas (rule V7): what failed or was written late goes now."""
    return [area.vault_id for area in RemovedVaultArea.objects.select_related("region") if clear_removed_area(area)]


def enable_backup_lock(*, actor, vault, confirmation=None):
    """Rule L1: once on, never off; `confirmation` (the vault's name) where a person confirms."""
    with (
        audit_refusals(
            "enable_backup_lock",
            actor=actor,
            account=vault.account,
            region_code=vault.region.code,
            object_type="vault",
            object_id=vault.id,
        ),
        transaction.atomic(),
    ):
        locked = Vault.objects.select_for_update().get(pk=vault.pk)
        if confirmation is not None and confirmation.strip() != locked.name:
            raise ValidationError({"confirmation": f"Type the vault's name, {locked.name}, to confirm."})
        reason = lock_refusal(locked)
        if reason:
            raise ValidationError(reason)
        if not locked.backup_lock:
            locked.backup_lock = True
            locked.save(update_fields=["backup_lock", "updated"])
            record_audit(
                actor=actor,
                action="enable_backup_lock",
                object_type="vault",
                object_id=locked.id,
                account=locked.account,
                region_code=vault.region.code,
            )
    return locked


def create_kms_key(*, actor, account, region, alias):
    """A customer key in the region's KMS; only its KeyId is stored here."""
    with audit_refusals("create_kms_key", actor=actor, account=account, region_code=region.code, object_type="kms_key"):
        alias = (alias or "").strip()
        if not alias:
            raise ValidationError({"alias": "Enter an alias for the key."})
        if len(alias) > 128:
            raise ValidationError({"alias": "The alias can have at most 128 characters."})
        if reason := region.new_work_refusal:
            raise ValidationError({"region": reason})
        if KmsKey.objects.filter(account=account, region=region, alias=alias).exists():
            raise ValidationError({"alias": f"A key with alias {alias!r} already exists in {region.name}."})
        provider = kms_provider()
        try:
            key_id = provider.create_key(region.code, alias)
        except KeyProviderError as exc:
            raise ValidationError(str(exc)) from exc
        with transaction.atomic():
            key = KmsKey.objects.create(
                account=account, region=region, key_id=key_id, alias=alias, provider=provider.name
            )
            record_audit(
                actor=actor,
                action="create_kms_key",
                object_type="kms_key",
                object_id=key_id,
                account=account,
                region_code=region.code,
                alias=alias,
            )
    return key


def adopt_chunk_id_key(vault, chunk_id_key):
    """An empty vault takes another vault's chunk-id key (a replication target takes its source's)."""
    if vault_keys(vault).chunk_id_key == chunk_id_key:
        return vault
    if Chunk.objects.filter(vault=vault).exists():
        raise ValidationError("This vault already holds data of another source; choose an empty target vault.")
    vault.wrapped_chunk_id_key = wrap_data_key(
        data_key=chunk_id_key,
        vault_id=vault.id,
        region_code=vault.region.code,
        kms_key=vault.kms_key,
        purpose="chunk-id",
    )
    vault.save(update_fields=["wrapped_chunk_id_key", "updated"])
    return vault
