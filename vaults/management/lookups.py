"""What the commands that make a vault (`vault create`, `replication start --create-name`) look up by name."""

from django.core.management.base import CommandError

from console.commandsupport import lookup
from console.models import ResourceGroup
from vaults.models import KmsKey


def group_and_key(account, resource_group, kms_key):
    """(resource group, KMS key) named on the command line, each None when not named; only the account's own."""
    group = (
        lookup(ResourceGroup.objects, "resource group", account=account, name=resource_group)
        if resource_group
        else None
    )
    key = None
    if kms_key:
        key = KmsKey.objects.filter(account=account, key_id=kms_key).first()
        if key is None:
            raise CommandError(f"kms_key: no KMS key {kms_key} in account {account.slug}.")
    return group, key
