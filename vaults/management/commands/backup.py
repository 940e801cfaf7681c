"""`manage.py backup --vault VAULT_ID [--source-type TYPE] [--wait] PATH`: back up a path or a bucket.

Registers (or reuses) a backup source for the path, queues the backup job, and
with --wait runs it here and now, printing the new point's id and a summary.
"""

import time

from django.core.management.base import CommandError

from console.commandsupport import ServiceCommand, lookup
from vaults import services
from vaults.models import BackupJob, BackupSource, SourceType, Vault


class Command(ServiceCommand):
    help = "Back up a directory, an export file or an OSS bucket into a vault."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--vault", required=True)
        parser.add_argument("--source-type", default=SourceType.ON_PREMISES_FILE, choices=SourceType.values)
        parser.add_argument("--bucket", default="", help="OSS source: the bucket (PATH is then the prefix)")
        parser.add_argument("--retention-days", type=int, default=None)
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
