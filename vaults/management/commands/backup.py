"""`manage.py backup --vault VAULT_ID [--source-type TYPE] [--wait] PATH`: back up a path or a bucket.

Registers (or reuses) a backup source for the path, queues the backup job, and
with --wait runs it here and now, printing the new point's id and a summary.
"""

import argparse
import time

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from console.commandsupport import ServiceCommand, lookup
from console.services import record_refusal
from vaults import services
from vaults.models import BackupJob, BackupSource, SourceType, Vault
from vaults.services.backups import MAX_RETENTION_DAYS


def retention_days(value):
    """Parsed here, so an out-of-range retention is refused before a source is registered."""
    days = int(value)
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"retention is 1 to {MAX_RETENTION_DAYS} days")
    return days


class Command(ServiceCommand):
    help = "Back up a directory, an export file or an OSS bucket into a vault."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--vault", required=True)
        parser.add_argument("--source-type", default=SourceType.ON_PREMISES_FILE, choices=SourceType.values)
        parser.add_argument("--bucket", default="", help="OSS source: the bucket (PATH is then the prefix)")
        parser.add_argument("--retention-days", type=retention_days, default=None)
        parser.add_argument(
            "--fail-on-change",
            action="store_true",
            help="fail instead of recording files that change while they are read",
        )
        parser.add_argument("--wait", action="store_true", help="run the job in this process and wait for it")
        parser.add_argument("path", nargs="?", default="")

    def handle(self, *args, **options):
        options["action"] = "run"
        return super().handle(*args, **options)

    def refuse_if_refused(self, vault, source):
        """The refusal start_backup would give (audited like its own), before anything is written."""
        reason = services.backup_refusal(vault, source)
        if reason:
            record_refusal(
                actor=None,
                action="start_backup",
                error=ValidationError(reason),
                account=vault.account,
                region_code=vault.region.code,
                object_type="vault",
                object_id=vault.id,
            )
            raise CommandError(reason)

    def handle_run(self, *, vault, source_type, bucket, path, retention_days, fail_on_change, wait, **_):
        vault = lookup(Vault.objects.select_related("account", "region"), "vault", pk=vault)
        if source_type == SourceType.OSS:
            if not bucket:
                raise CommandError("An OSS backup needs --bucket (PATH is the prefix).")
            fields = {"bucket": bucket, "prefix": path}
            name = f"oss://{bucket}/{path}"
        else:
            if not path:
                raise CommandError("Give the PATH to back up.")
            fields = {"path": path}
            name = path
        source = BackupSource.objects.filter(
            account=vault.account, region=vault.region, source_type=source_type, **fields
        ).first()
        if source is None:
            # a refused backup registers no source: the refusal is asked of the source to be, before it exists
            self.refuse_if_refused(
                vault, BackupSource(account=vault.account, region=vault.region, source_type=source_type, **fields)
            )
            source = services.create_backup_source(
                actor=None,
                account=vault.account,
                region=vault.region,
                source_type=source_type,
                name=name[-64:],
                **fields,
            )
        job = services.start_backup(
            actor=None, vault=vault, source=source, retention_days=retention_days, fail_on_change=fail_on_change
        )
        if wait:
            services.run_backup_job(job.pk)  # the queued copy of the task finds it finished and does nothing
            job.refresh_from_db()
            while job.status in (BackupJob.Status.QUEUED, BackupJob.Status.RUNNING):
                time.sleep(0.5)
                job.refresh_from_db()
        result = {
            "id": job.point_id,
            "job": job.pk,
            "status": job.status,
            "bytes": job.bytes_done,
            "stored_bytes": job.bytes_stored,
            "files": job.files_done,
            "warnings": job.warnings,
            "seconds": (job.finished - job.started).total_seconds() if job.finished and job.started else None,
        }
        if job.status == BackupJob.Status.FAILED:
            raise CommandError(job.error)
        if not wait:
            result["id"] = None
            return result, f"Queued backup job {job.pk}."
        return result, (
            f"{job.point_id}: {job.files_done} files, {job.bytes_done} bytes read, {job.bytes_stored} bytes stored"
        )
