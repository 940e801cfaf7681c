"""`manage.py vault create|list|show|delete`: the console's vault actions for scripts."""

import time

from django.core.management.base import CommandError

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from vaults import selectors, services
from vaults.management.lookups import group_and_key
from vaults.models import EncryptionMethod, Vault, VaultStatus, VaultType


def vault_json(vault):
    return {
        "id": vault.id,
        "name": vault.name,
        "description": vault.description,
        "account": vault.account.slug,
        "region": vault.region.code,
        "resource_group": vault.resource_group.name,
        "type": vault.vault_type,
        "status": vault.status,
        "status_reason": vault.status_reason,
        "redundancy": vault.redundancy,
        "encryption": vault.encryption_method,
        "kms_key": vault.kms_key.key_id if vault.kms_key else None,
        "data_size": vault.data_size,
        "backup_lock": vault.backup_lock,
        "created": vault.created.isoformat(),
        "points": [
            {
                "id": p.id,
                "created": p.created.isoformat(),
                "tier": p.tier,
                "size": p.size,
                "expires": p.expires.isoformat() if p.expires else None,
                "files": p.files,
                "source_type": p.source_type,
            }
            for p in vault.points.all()
        ],
    }


class Command(ServiceCommand):
    help = "Create, list, show and delete backup vaults."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        create = self.subcommand("create", "create a vault")
        create.add_argument("--account", required=True)
        create.add_argument("--region", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--description", default="")
        create.add_argument("--type", default=VaultType.GENERAL, choices=VaultType.values)
        create.add_argument("--resource-group", default=None)
        create.add_argument(
            "--encryption", default=EncryptionMethod.CLOUD_BACKUP_MANAGED, choices=EncryptionMethod.values
        )
        create.add_argument("--kms-key", default=None, help="KMS KeyId of the vault's region")
        create.add_argument("--wait", action="store_true", help="wait until the vault leaves Initializing")
        listing = self.subcommand("list", "list an account's vaults")
        listing.add_argument("--account", required=True)
        listing.add_argument("--region", default=None)
        show = self.subcommand("show", "show one vault")
        show.add_argument("vault_id")
        delete = self.subcommand("delete", "delete a vault and all its backup data")
        delete.add_argument("vault_id")
        delete.add_argument("--yes", action="store_true", help="confirm the deletion")

    def handle_create(
        self, *, account, region, name, description, type, resource_group, encryption, kms_key, wait, **_
    ):
        account = lookup(Account.objects, "account", slug=account)
        region = lookup(Region.objects, "region", code=region)
        group, key = group_and_key(account, resource_group, kms_key)
        vault = services.create_vault(
            actor=None,
            account=account,
            region=region,
            name=name,
            description=description,
            resource_group=group,
            vault_type=type,
            encryption_method=encryption,
            kms_key=key,
        )
        if wait:
            vault = self.wait_for_storage(vault)
        return vault_json(vault), f"{vault.id} {vault.name} {vault.get_status_display()}"

    def wait_for_storage(self, vault, timeout=60):
        deadline = time.monotonic() + timeout
        while vault.status == VaultStatus.INITIALIZING:
            if time.monotonic() > deadline:
                raise CommandError(f"{vault.id} is still Initializing after {timeout}s: is a worker running?")
            time.sleep(0.25)
            vault.refresh_from_db()
        return vault

    def handle_list(self, *, account, region, **_):
        account = lookup(Account.objects, "account", slug=account)
        region_obj = lookup(Region.objects, "region", code=region) if region else None
        vaults = list(selectors.vaults_of(account, region_obj).select_related("account"))
        lines = [f"{v.id}  {v.region.code:16} {v.get_status_display():12} {v.name}" for v in vaults]
        return {"vaults": [vault_json(v) for v in vaults]}, "\n".join(lines) or "No vaults."

    def handle_show(self, *, vault_id, **_):
        vault = lookup(
            Vault.objects.select_related("account", "region", "kms_key", "resource_group"), "vault", pk=vault_id
        )
        data = vault_json(vault)
        return data, "\n".join(f"{k}: {v}" for k, v in data.items())

    def handle_delete(self, *, vault_id, yes, **_):
        vault = lookup(Vault.objects.select_related("account", "region"), "vault", pk=vault_id)
        if not yes:
            raise CommandError("Deleting a vault removes all its backup data: add --yes to confirm.")
        services.delete_vault(actor=None, vault=vault, confirmation=vault.name)
        return {"id": vault_id, "deleted": True}, f"Deleted {vault_id}."
