"""`manage.py kms create-key|list`: customer keys in a region's KMS."""

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from vaults import services
from vaults.models import KmsKey


def key_json(key):
    return {
        "id": key.key_id,
        "key_id": key.key_id,
        "alias": key.alias,
        "account": key.account.slug,
        "region": key.region.code,
        "provider": key.provider,
    }


class Command(ServiceCommand):
    help = "Create and list KMS keys."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        create = self.subcommand("create-key", "create a key in a region's KMS")
        create.add_argument("--account", required=True)
        create.add_argument("--region", required=True)
        create.add_argument("--alias", required=True)
        listing = self.subcommand("list", "list an account's keys")
        listing.add_argument("--account", required=True)
        listing.add_argument("--region", default=None)

    def handle_create_key(self, *, account, region, alias, **_):
        account = lookup(Account.objects, "account", slug=account)
        region = lookup(Region.objects, "region", code=region)
        key = services.create_kms_key(actor=None, account=account, region=region, alias=alias)
        return key_json(key), f"{key.key_id} {key.alias} ({region.code})"

    def handle_list(self, *, account, region, **_):
        keys = KmsKey.objects.filter(account__slug=account).select_related("account", "region")
        if region:
            keys = keys.filter(region__code=region)
        return {"keys": [key_json(k) for k in keys]}, "\n".join(
            f"{k.key_id}  {k.region.code:16} {k.alias}" for k in keys
        ) or "No keys."
