"""`manage.py source create|list`: backup sources for scripts (what a backup or a policy reads)."""

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from vaults.models import BackupSource, SourceType
from vaults.services import create_backup_source


def source_json(source):
    return {
        "id": source.pk,
        "name": source.name,
        "account": source.account.slug,
        "region": source.region.code,
        "type": source.source_type,
        "path": source.path,
        "bucket": source.bucket,
        "prefix": source.prefix,
        "retain_at_least_one": source.retain_at_least_one,
    }


class Command(ServiceCommand):
    help = "Register and list backup sources."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        create = self.subcommand("create", "register a backup source")
        create.add_argument("--account", required=True)
        create.add_argument("--region", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--type", default=SourceType.ECS_FILE, choices=SourceType.values)
        where = create.add_mutually_exclusive_group(required=True)
        where.add_argument("--path", default="", help="a directory (or export file) the workers read")
        where.add_argument("--bucket", default="", help="an OSS bucket of the account in the region")
        create.add_argument("--prefix", default="", help="with --bucket: only keys under it")
        create.add_argument("--retain-at-least-one", action="store_true")
        listing = self.subcommand("list", "list an account's backup sources")
        listing.add_argument("--account", required=True)
        listing.add_argument("--region", default=None)

    def handle_create(self, *, account, region, name, type, path, bucket, prefix, retain_at_least_one, **_):
        source = create_backup_source(
            actor=None,
            account=lookup(Account.objects, "account", slug=account),
            region=lookup(Region.objects, "region", code=region),
            source_type=type,
            name=name,
            path=path,
            bucket=bucket,
            prefix=prefix,
            retain_at_least_one=retain_at_least_one,
        )
        return source_json(source), f"{source.pk} {source.name} ({source.location})"

    def handle_list(self, *, account, region, **_):
        sources = BackupSource.objects.filter(account=lookup(Account.objects, "account", slug=account))
        if region:
            sources = sources.filter(region=lookup(Region.objects, "region", code=region))
        listed = [source_json(s) for s in sources.select_related("account", "region")]
        lines = [f"{s['id']}  {s['region']:16} {s['name']} ({s['type']})" for s in listed]
        return {"sources": listed}, "\n".join(lines) or "No backup sources."
