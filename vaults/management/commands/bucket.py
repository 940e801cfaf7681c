"""`manage.py bucket assign|register|list`: which account's OSS buckets are which (rule T2)."""

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from vaults import services
from vaults.models import OssBucket


def bucket_json(bucket):
    return {
        "id": bucket.pk,
        "name": bucket.name,
        "region": bucket.region.code,
        "account": bucket.account.slug,
        "own_key": bool(bucket.access_key_id),
    }


class Command(ServiceCommand):
    help = "Give OSS buckets to accounts (an operator's act), register one with its own key, list them."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        for verb, text in (
            ("assign", "an operator gives a bucket to an account (a local bucket is created)"),
            ("register", "an account registers a bucket with an S3 access key of its own"),
            ("list", "the buckets of an account"),
        ):
            sub = self.subcommand(verb, text)
            sub.add_argument("--account", required=True)
            sub.add_argument("--region", required=verb != "list")
            if verb != "list":
                sub.add_argument("--bucket", required=True)
            if verb == "register":
                sub.add_argument("--access-key-id", required=True)
                sub.add_argument("--secret-access-key", required=True)

    def _where(self, account, region):
        account = lookup(Account.objects, "account", slug=account)
        return account, region and lookup(Region.objects, "region", code=region)

    def handle_assign(self, *, account, region, bucket, **_):
        account, region = self._where(account, region)
        owned = services.assign_bucket(actor=None, account=account, region=region, name=bucket)
        return bucket_json(owned), f"{owned.name} ({region.code}) belongs to {account.slug}"

    def handle_register(self, *, account, region, bucket, access_key_id, secret_access_key, **_):
        account, region = self._where(account, region)
        owned = services.register_bucket(
            actor=None,
            account=account,
            region=region,
            name=bucket,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
        return bucket_json(owned), f"{owned.name} ({region.code}) registered for {account.slug}"

    def handle_list(self, *, account, region, **_):
        account, region = self._where(account, region)
        buckets = OssBucket.objects.filter(account=account).select_related("region", "account")
        if region:
            buckets = buckets.filter(region=region)
        return {"buckets": [bucket_json(b) for b in buckets]}, "\n".join(
            f"{b.region.code:16} {b.name}" for b in buckets
        ) or "No buckets."
