"""`manage.py seed_scale`: an account with many vaults, points and jobs in one region, to measure pages at scale.

    manage.py seed_scale --region cn-hangzhou --vaults 1000 --points 100000

Vaults, backup sources, restore targets and OSS buckets are made by the services
(real keys, real storage areas, every rule checked). The backup points, jobs, audit
rows and usage days are catalog rows written in bulk: they hold no data, so a
restore of a seeded point fails ("manifest missing"). The first vault
(`scale-00001`) holds a tenth of the points, as a long-lived daily vault would. The
account is new each run (`--account`, default
`scale`, refused if it exists), so nothing of another account is touched.
"""

import random
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from console import audit, services
from console.models import Account, AuditLog, Region
from restore.models import RestoreJob, TargetKind
from restore.services import create_restore_target
from vaults.models import BackupJob, BackupPoint, SourceType, StorageUsage, Tier, Vault, VaultStatus
from vaults.services import assign_bucket, create_backup_source, initialize_vault_storage
from vaults.services.vaults import build_vault

BATCH = 5000


class Command(BaseCommand):
    help = "Seed an account with many vaults and backup points in a region (for page benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--region", required=True)
        parser.add_argument("--account", default="scale")
        parser.add_argument("--vaults", type=int, default=1000)
        parser.add_argument("--points", type=int, default=100000)
        parser.add_argument("--password", default="", help="Also create a user named like the account.")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, region, account, vaults, points, password, seed, **options):
        region_obj = Region.objects.filter(code=region).first()
        if region_obj is None or not region_obj.is_enabled:
            raise CommandError(f"No enabled region {region!r}.")
        if Account.objects.filter(slug=account).exists():
            raise CommandError(f"The account {account!r} exists: seed a new one (--account).")
        if vaults < 1 or points < 0:
            raise CommandError("--vaults must be at least 1 and --points at least 0.")
        started = time.perf_counter()
        counts = seed_scale(region_obj, account, vaults=vaults, points=points, rng=random.Random(seed))
        if password:
            user = get_user_model().objects.create_user(username=account, password=password)
            services.add_member(actor=None, account=Account.objects.get(slug=account), user=user)
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        self.stdout.write(f"Account {account!r} in {region}: {summary} ({time.perf_counter() - started:.1f} s)")


def seed_scale(region, slug, *, vaults, points, rng):
    """The account and its rows; returns how many of each were made."""
    account = services.create_account(actor=None, slug=slug, name=f"Scale {slug}")
    bucket = f"{slug}-data"[:63]
    assign_bucket(actor=None, account=account, region=region, name=bucket)
    n_sources = max(1, min(100, vaults // 10))
    sources = [
        create_backup_source(
            actor=None,
            account=account,
            region=region,
            source_type=SourceType.OSS,
            name=f"source-{i:03d}",
            bucket=bucket,
            prefix=f"s{i:03d}/",
        )
        for i in range(n_sources)
    ]
    for i in range(n_sources):
        create_restore_target(
            actor=None,
            account=account,
            region=region,
            kind=TargetKind.OSS_BUCKET,
            name=f"target-{i:03d}",
            location=bucket,
            prefix=f"restored/t{i:03d}/",
        )
    built = [
        build_vault(
            account=account,
            region=region,
            name=f"scale-{i:05d}",
            description="",
            resource_group=None,
            vault_type="general",
            encryption_method="cloud-backup-managed",
            kms_key=None,
        )
        for i in range(1, vaults + 1)
    ]
    Vault.objects.bulk_create(built, batch_size=BATCH)
    for vault in built:
        initialize_vault_storage(vault.id)
    normal = list(Vault.objects.filter(account=account, status=VaultStatus.NORMAL).order_by("name"))
    now = timezone.now()
    point_rows = _points(normal, sources, points, now, rng)
    jobs = _jobs(point_rows[::10], account, now)
    restores = _restores(point_rows[5::100], account, region, now)
    audit = _audit(account, region, len(point_rows) // 10, now)
    usage = _usage(normal, account, region, now)
    sizes = {}
    for point in point_rows:
        sizes[point.vault_id] = sizes.get(point.vault_id, 0) + point.stored_bytes
    for vault in normal:
        vault.data_size = sizes.get(vault.id, 0)
    Vault.objects.bulk_update(normal, ["data_size"], batch_size=BATCH)
    return {
        "vaults": len(normal),
        "backup points": len(point_rows),
        "backup sources": n_sources,
        "restore targets": n_sources,
        "backup jobs": jobs,
        "restore jobs": restores,
        "audit rows": audit,
        "usage days": usage,
    }


def _bulk(model, rows):
    with transaction.atomic():
        model.objects.bulk_create(rows, batch_size=BATCH)
    return len(rows)


def _points(vaults, sources, count, now, rng):
    """A tenth in the first vault, the rest spread; one a day or so, newest now; a tenth archived."""
    rows = []
    big = count // 10
    for i in range(count):
        vault = vaults[0] if i < big or len(vaults) == 1 else vaults[1 + i % (len(vaults) - 1)]
        source = sources[i % len(sources)]
        created = now - timedelta(hours=24 * (i // len(vaults)) + rng.random() * 20, seconds=i % 60)
        size = rng.randrange(1, 1 << 34)
        rows.append(
            BackupPoint(
                vault=vault,
                source=source,
                source_type=source.source_type,
                source_location=source.location,
                created=created,
                expires=created + timedelta(days=rng.choice((30, 365, 3650))),
                tier=Tier.ARCHIVE if i % 10 == 9 else Tier.STANDARD,
                files=rng.randrange(1, 100000),
                size=size,
                stored_bytes=size // 20,
                manifest_key=f"{vault.storage_prefix}manifests/seeded-{i}.json",
            )
        )
    _bulk(BackupPoint, rows)
    return rows


def _jobs(points, account, now):
    rows = []
    for point in points:
        rows.append(
            BackupJob(
                account=account,
                vault=point.vault,
                source=point.source,
                status=BackupJob.Status.SUCCEEDED,
                point=point,
                files_total=point.files,
                files_done=point.files,
                bytes_total=point.size,
                bytes_done=point.size,
                bytes_stored=point.stored_bytes,
                started=point.created,
                finished=point.created + timedelta(minutes=5),
            )
        )
    return _bulk(BackupJob, rows)


def _restores(points, account, region, now):
    targets = list(account.restore_targets.filter(region=region))
    rows = [
        RestoreJob(
            account=account,
            vault=point.vault,
            point=point,
            point_label=point.id,
            target=targets[i % len(targets)],
            status=RestoreJob.Status.SUCCEEDED,
            files_total=point.files,
            files_done=point.files,
            bytes_total=point.size,
            bytes_done=point.size,
            bytes_written=point.size,
            started=point.created + timedelta(days=1),
            finished=point.created + timedelta(days=1, minutes=9),
        )
        for i, point in enumerate(points)
    ]
    return _bulk(RestoreJob, rows)


def _audit(account, region, count, now):
    rows = [
        AuditLog(
            actor_name="seed",
            account=account,
            account_name=account.name,
            region_code=region.code,
            object_type="backup_job",
            object_id=str(i),
            action="start_backup",
        )
        for i in range(count)
    ]
    for row in rows:
        audit.sign(row)  # written as the service writes its rows: `manage.py audit verify` vouches for them
    written = _bulk(AuditLog, rows)
    audit.seal()
    return written


def _usage(vaults, account, region, now):
    today = now.date()
    rows = [
        StorageUsage(
            vault=vault,
            vault_label=f"{vault.name} ({vault.id})",
            account=account,
            region=region,
            day=today - timedelta(days=day),
            peak_bytes=(1 + day) << 30,
        )
        for vault in vaults
        for day in range(today.day)
    ]
    return _bulk(StorageUsage, rows)
