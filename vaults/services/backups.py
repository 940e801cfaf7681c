"""Backup sources, backup jobs and backup points: start, run, commit, delete, collect garbage.

A point's row is written only in the transaction that commits it, after every
pack and its manifest are durably stored (rule P3); a job that dies before that
leaves packs that the next run reuses and garbage collection later removes.
"""

import json
import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from console import jobs
from console.models import JobStatus
from console.services import audit_refusals, record_audit

from ..dataplane.backup import (
    PointWriter,
    Progress,
    SourceError,
    open_source,
    read_bucket,
    read_file_tree,
    resolve_chunks,
    scan_totals,
)
from ..dataplane.chunkstore import ChunkCodec, manifest_key
from ..dataplane.keys import KeyProviderError, vault_keys
from ..dataplane.objectstore import (
    BUCKET_NAME_RULE,
    ObjectStoreError,
    is_valid_bucket_name,
    path_refusal,
    region_store,
)
from ..dataplane.readback import PointReader
from ..dataplane.tenantfs import clean_prefix, prefix_refusal
from ..models import (
    BackupJob,
    BackupPoint,
    BackupSource,
    Chunk,
    PointChunk,
    SourceType,
    Tier,
    Vault,
    VaultStatus,
    VaultType,
    new_point_id,
)
from .buckets import open_oss_bucket, oss_bucket_refusal
from .gc import collect_garbage, committing, remove_point
from .hooks import BACKUP_GUARDS, POINT_COMMITTED, points_edit_refusal
from .storage import chunk_pks_of, refresh_data_size

log = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 36500


class BackupFailed(Exception):
    """A backup job cannot finish; the message is shown to the user."""


def create_backup_source(
    *, actor, account, region, source_type, name, path="", bucket="", prefix="", retain_at_least_one=False
):
    """Register what a backup reads: a directory or export (path), or an OSS bucket and prefix."""
    with audit_refusals(
        "create_backup_source", actor=actor, account=account, region_code=region.code, object_type="backup_source"
    ):
        errors = {}
        name = (name or "").strip()
        if not name or len(name) > 64:
            errors["name"] = "Enter a name of at most 64 characters."
        elif BackupSource.objects.filter(account=account, region=region, name=name).exists():
            errors["name"] = f"A backup source named {name!r} already exists in {region.name}."
        if source_type not in SourceType.values:
            errors["source_type"] = f"Unknown data source type {source_type!r}."
        elif source_type == SourceType.OSS:
            bucket = (bucket or "").strip()
            if not is_valid_bucket_name(bucket):
                errors["bucket"] = BUCKET_NAME_RULE
            elif reason := oss_bucket_refusal(account=account, region=region, name=bucket):
                errors["bucket"] = reason
            try:
                prefix = clean_prefix(prefix)
            except ValueError as exc:
                errors["prefix"] = str(exc)
            path = ""
        else:
            path = (path or "").strip()
            if not path.startswith("/"):
                errors["path"] = "Enter an absolute path the backup worker can read."
            elif reason := path_refusal(path, account):
                errors["path"] = reason
            bucket = prefix = ""
        if reason := region.new_work_refusal:
            errors["region"] = reason
        if errors:
            raise ValidationError(errors)
        with transaction.atomic():
            source = BackupSource.objects.create(
                account=account,
                region=region,
                source_type=source_type,
                name=name,
                path=path,
                bucket=bucket,
                prefix=prefix,
                retain_at_least_one=retain_at_least_one,
            )
            record_audit(
                actor=actor,
                action="create_backup_source",
                object_type="backup_source",
                object_id=source.pk,
                account=account,
                region_code=region.code,
                name=name,
                type=source_type,
                location=source.location,
            )
    return source


def vault_backup_refusal(vault):
    """Why no backup can go into this vault now, or None."""
    if vault.vault_type == VaultType.REPLICATION_TARGET:
        return "A Replication Target vault is read-only: it cannot be the target of a backup (rule R9)."
    if reason := vault.region.new_work_refusal:
        return reason
    if vault.status != VaultStatus.NORMAL:
        return f"The vault is {vault.get_status_display()}: backups need a vault in Normal state."
    return None


def backup_refusal(vault, source):
    """Why a backup of this source into this vault cannot start, or None."""
    return vault_backup_refusal(vault) or source_refusal(vault, source)


def source_refusal(vault, source):
    """Why this source can never be backed up into this vault (whatever state the vault is in now), or None."""
    if source.account_id != vault.account_id:
        return "The backup source belongs to another account."
    if source.region_id != vault.region_id:
        return f"The backup source is in {source.region.name}; the vault is in {vault.region.name}."
    if source.source_type == SourceType.OSS:
        reason = oss_bucket_refusal(account=source.account, region=source.region, name=source.bucket)
        reason = reason or prefix_refusal(source.prefix)
    else:
        reason = path_refusal(source.path, source.account)
    if reason:
        return reason
    for guard in BACKUP_GUARDS:
        reason = guard(vault, source)
        if reason:
            return reason
    return None


def start_backup(*, actor, vault, source, retention_days=None, fail_on_change=False, policy_run=None):
    """Queue a backup job of a source into a vault of the same account and region (for a policy's run too)."""
    with audit_refusals(
        "start_backup",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="vault",
        object_id=vault.id,
    ):
        reason = backup_refusal(vault, source)
        if reason:
            raise ValidationError(reason)
        if retention_days is not None and not (1 <= retention_days <= MAX_RETENTION_DAYS):
            raise ValidationError({"retention_days": f"Retention is 1 to {MAX_RETENTION_DAYS} days, or none."})
        with transaction.atomic():
            # one at a time per source and vault, so a double click or a repeated request makes one job
            BackupSource.objects.select_for_update().filter(pk=source.pk).first()
            if queued := jobs.active(BackupJob.objects.filter(vault=vault, source=source)).first():
                raise ValidationError(
                    f"A backup of {source.name} into this vault is already {queued.status} (job {queued.pk}): "
                    "it must end before another starts."
                )
            job = BackupJob.objects.create(
                account=vault.account,
                vault=vault,
                source=source,
                retention_days=retention_days,
                fail_on_change=fail_on_change,
                policy_run=policy_run,
            )
            record_audit(
                actor=actor,
                action="start_backup",
                object_type="backup_job",
                object_id=job.pk,
                account=vault.account,
                region_code=vault.region.code,
                vault=vault.id,
                source=source.name,
                **({"policy": policy_run.policy.name, "trigger": policy_run.trigger} if policy_run else {}),
            )
            transaction.on_commit(lambda: _enqueue_backup(job.pk))
    return job


def _enqueue_backup(job_id):
    jobs.enqueue(BACKUP, job_id)


def _wait_for_collection(job):
    """A backup starts only once a garbage collection running on its vault has finished (it takes the lock)."""
    Vault.objects.select_for_update().filter(pk=job.vault_id).first()


def _audit_of(job):
    return {
        "action": "run_backup",
        "object_type": "backup_job",
        "object_id": job.pk,
        "account": job.account,
        "region_code": job.vault.region.code,
    }


BACKUP = jobs.register(
    jobs.JobKind(
        model=BackupJob,
        task="vaults.tasks.run_backup_job_task",
        audit=_audit_of,
        lost="The worker running this job stopped. Run the backup again: the data already stored is not "
        "uploaded again.",
        related=("vault__region", "source", "account", "policy_run"),
        on_claim=_wait_for_collection,
        audit_success=False,  # commit_point's own audit row says what it made
    )
)


def run_backup_job(job_id):
    """Run one backup job to a committed point, or to a failed job with the reason."""
    return jobs.run(BACKUP, job_id, _run, expected=(BackupFailed, SourceError, ObjectStoreError, KeyProviderError))


def _run(job):
    vault, source = job.vault, job.source
    if not Vault.objects.filter(pk=vault.pk).exists():
        raise BackupFailed("The vault was deleted.")
    reason = backup_refusal(vault, source)
    if reason:
        raise BackupFailed(reason)
    store = region_store(vault.region)
    codec = ChunkCodec(vault_keys(vault))
    warnings = []

    def save(progress):
        jobs.beat(job, files_done=progress.files, bytes_done=progress.bytes, bytes_stored=writer.stored_bytes)

    progress = Progress(save)
    writer = PointWriter(vault, store, codec)
    try:
        if source.source_type == SourceType.OSS:
            bucket = open_oss_bucket(account=source.account, region=vault.region, name=source.bucket)
            files, total = bucket.totals(source.prefix)
            jobs.beat(job, files_total=files, bytes_total=total)
            entries = read_bucket(writer, bucket, source.prefix, progress, warnings)
        else:
            # what is read is checked once opened, not by its name (rule T1)
            with open_source(source.path, check=lambda real: path_refusal(real, source.account)) as root:
                files, total = scan_totals(root)
                jobs.beat(job, files_total=files, bytes_total=total)
                entries = read_file_tree(writer, root, progress, warnings, parent=_parent_entries(vault, source))
        writer.close()
        resolve_chunks(entries)
    except BaseException:
        writer.abort()
        raise
    progress.tick(force=True)
    changed = [w for w in warnings if "changed" in w["problem"]]
    if job.fail_on_change and changed:
        raise BackupFailed(
            f"{len(changed)} file(s) changed while being read, first {changed[0]['path']}; no point was written."
        )
    return commit_point(
        job=job,
        entries=entries,
        refs=writer.refs,
        stored_bytes=writer.stored_bytes,
        codec=codec,
        store=store,
        warnings=warnings,
    )


def _parent_entries(vault, source):
    """The entries of the source's latest point in this vault, by path (empty if none or unreadable)."""
    point = BackupPoint.objects.filter(vault=vault, source=source).select_related("vault__region").first()
    if point is None:
        return {}
    try:
        return {e["path"]: e for e in PointReader(point).manifest()["entries"]}
    except Exception:  # a damaged parent only costs a full read
        log.warning("Cannot read the manifest of %s; reading every file", point.id, exc_info=True)
        return {}


def commit_point(*, job, entries, refs, stored_bytes, codec, store, warnings=()):
    """Rule P3: store the manifest, then create the point and its references in one transaction."""
    vault, source = job.vault, job.source
    point_id = new_point_id()
    created = timezone.now()
    manifest = {
        "version": 1,
        "point": point_id,
        "vault": vault.id,
        "source_type": source.source_type,
        "source": source.location,
        "created": created.isoformat(),
        "entries": entries,
    }
    blob = codec.seal_manifest(point_id, json.dumps(manifest, separators=(",", ":")).encode())
    key = manifest_key(vault, point_id)
    store.put(key, blob)
    with committing(store, key):
        locked = Vault.objects.select_for_update().get(pk=vault.pk)
        chunk_pks = chunk_pks_of(locked, refs).values()
        if len(chunk_pks) != len(refs):
            raise BackupFailed("Some chunks left the vault while the backup ran; run the backup again.")
        files = [e for e in entries if e["type"] in ("file", "object")]
        point = BackupPoint.objects.create(
            id=point_id,
            vault=locked,
            source=source,
            source_type=source.source_type,
            source_location=source.location,
            created=created,
            expires=created + timedelta(days=job.retention_days) if job.retention_days else None,
            by_policy=job.policy_run.rules.get("policy", "") if job.policy_run else "",
            rules=job.policy_run.rules if job.policy_run else {},
            files=len(files),
            size=sum(e["size"] for e in files),
            stored_bytes=stored_bytes,
            manifest_key=key,
            manifest_size=len(blob),
        )
        PointChunk.objects.bulk_create([PointChunk(point=point, chunk_id=pk) for pk in chunk_pks], batch_size=5000)
        refresh_data_size(locked)
        # this attempt must still hold the job (JobLost otherwise: the point is not created)
        jobs.finish(
            BACKUP,
            job,
            JobStatus.SUCCEEDED,
            point=point,
            warnings=list(warnings),
            bytes_stored=stored_bytes,
            files_done=len(files),
        )
        record_audit(
            actor=None,
            action="commit_point",
            object_type="backup_point",
            object_id=point.id,
            account=locked.account,
            region_code=locked.region.code,
            vault=locked.id,
            files=point.files,
            size=point.size,
            stored=stored_bytes,
        )
        for listener in POINT_COMMITTED:
            transaction.on_commit(lambda listener=listener: listener(point))
    return point


def commit_replica_point(*, source_point, vault, point_id, manifest_key, manifest_size, stored_bytes, chunks):
    """Rule P3 for a copy: the point of another vault's point, once its chunks and manifest are stored in `vault`.

    Called inside the caller's transaction (the replication pair's lock); the point keeps its
    source's creation time and, as of now, its retention (a change made during the copy is not
    lost: set_point_retention locks the source point too). Refuses if any chunk is missing.
    """
    current = BackupPoint.objects.select_for_update().filter(pk=source_point.pk).first()
    point = BackupPoint.objects.create(
        id=point_id,
        vault=vault,
        source=None,
        source_type=source_point.source_type,
        source_location=source_point.source_location,
        created=source_point.created,
        expires=(current or source_point).expires,
        tier=Tier.STANDARD,
        files=source_point.files,
        size=source_point.size,
        stored_bytes=stored_bytes,
        manifest_key=manifest_key,
        manifest_size=manifest_size,
    )
    if _reference_chunks(point, source_point) != chunks:
        raise RuntimeError(f"Chunks of {source_point.id} are missing at the target; the copy is retried.")
    refresh_data_size(vault)
    return point


def _reference_chunks(point, source_point):
    """Give the target point the target's index rows of the source point's chunks; return how many.

    One INSERT ... SELECT: a point of a million chunks is linked without a row
    passing through Python.
    """
    quote = connection.ops.quote_name
    point_chunk, chunk = quote(PointChunk._meta.db_table), quote(Chunk._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {point_chunk} (point_id, chunk_id) SELECT %s, t.id FROM {chunk} t "
            f"WHERE t.vault_id = %s AND t.chunk_id IN (SELECT s.chunk_id FROM {chunk} s "
            f"JOIN {point_chunk} r ON r.chunk_id = s.id WHERE r.point_id = %s)",
            [point.pk, point.vault_id, source_point.pk],
        )
        return cursor.rowcount


def point_delete_refusal(point, *, now=None):
    """Why a point cannot be deleted by hand now, or None (rules L1, R9)."""
    return point_delete_refusals(point.vault, [point], now=now)[point.pk]


def point_delete_refusals(vault, points, *, now=None):
    """{point id: why it cannot be deleted, or None} for points of one vault, in a fixed number of queries."""
    now = now or timezone.now()
    vault_reason = points_edit_refusal(vault)
    refusals = {}
    for point in points:
        if vault.backup_lock and (point.expires is None or point.expires > now):
            refusals[point.pk] = "Backup lock is on: the point cannot be deleted before it expires."
        else:
            refusals[point.pk] = vault_reason
    return refusals


def delete_point(*, actor, point):
    """Delete a point by hand (where allowed): its manifest and the chunks no other point needs."""
    vault = point.vault
    with audit_refusals(
        "delete_point",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="backup_point",
        object_id=point.id,
    ):
        with transaction.atomic():
            locked = BackupPoint.objects.select_for_update().select_related("vault").filter(pk=point.pk).first()
            if locked is None:
                raise ValidationError("The backup point no longer exists.")
            reason = point_delete_refusal(locked)
            if reason:
                raise ValidationError(reason)
            remove_point(locked)
            record_audit(
                actor=actor,
                action="delete_point",
                object_type="backup_point",
                object_id=point.id,
                account=vault.account,
                region_code=vault.region.code,
                vault=vault.id,
            )
    collect_garbage(vault.pk)
