"""Backup sources, backup jobs and backup points: start, run, commit, delete, collect garbage.

A point's row is written only in the transaction that commits it, after every
pack and its manifest are durably stored (rule P3); a job that dies before that
leaves packs that the next run reuses and garbage collection later removes.
"""

import json
import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from console import jobs
from console.models import JobStatus
from console.services import audit_refusals, record_audit

from ..backup import (
    PointWriter,
    Progress,
    SourceError,
    open_source,
    read_bucket,
    read_file_tree,
    resolve_chunks,
    scan_totals,
)
from ..chunkstore import ChunkCodec, manifest_key
from ..keys import KeyProviderError, vault_keys
from ..models import (
    BackupJob,
    BackupPoint,
    BackupSource,
    Chunk,
    Pack,
    PointChunk,
    SourceType,
    StorageUsage,
    Vault,
    VaultStatus,
    VaultType,
    new_point_id,
)
from ..objectstore import (
    BUCKET_NAME_RULE,
    ObjectStoreError,
    is_valid_bucket_name,
    path_refusal,
    region_store,
)
from ..tenantfs import clean_prefix, prefix_refusal
from .buckets import open_oss_bucket, oss_bucket_refusal

log = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 36500

# Callables other apps add; each gets a committed point (replication: copy it, rule R8).
POINT_COMMITTED = []
# Checks other apps add before a vault's points are deleted or changed by hand; each gets the vault and
# returns a reason or None (rule R9).
POINT_DELETE_GUARDS = []
# Hooks (vault) -> True while another app's work in flight needs the vault's unreferenced chunks.
GC_GUARDS = []
# Checks other apps add before a backup starts; each gets (vault, source), returns a reason or None.
BACKUP_GUARDS = []
# Callables other apps add; each gets (point id, vault id) of a point that was deleted or expired (rule R9).
POINT_REMOVED = []


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
    reason = vault_backup_refusal(vault)
    if reason:
        return reason
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


def start_backup(*, actor, vault, source, retention_days=None, fail_on_change=False):
    """Queue a backup job of a source into a vault of the same account and region."""
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
        related=("vault__region", "source", "account"),
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
    from ..readback import PointReader

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
    try:
        with transaction.atomic():
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
    except BaseException:
        _forget_object(store, key)
        raise
    return point


def chunk_pks_of(vault, chunk_ids, batch=1000):
    """{chunk id: row id} of the given ids that the vault holds, in batches."""
    ids = list(chunk_ids)
    found = {}
    for i in range(0, len(ids), batch):
        rows = Chunk.objects.filter(vault=vault, chunk_id__in=ids[i : i + batch]).values_list("chunk_id", "pk")
        found.update((bytes(cid), pk) for cid, pk in rows)
    return found


def _forget_object(store, key):
    try:
        store.delete(key)
    except ObjectStoreError:
        log.warning("Could not remove %s after a failed commit", key)


def refresh_data_size(vault):
    """Rule V6: the bytes the vault occupies in its store (packs after dedup, plus manifests)."""
    packs = Pack.objects.filter(vault=vault).aggregate(n=Sum("size"))["n"] or 0
    manifests = BackupPoint.objects.filter(vault=vault).aggregate(n=Sum("manifest_size"))["n"] or 0
    Vault.objects.filter(pk=vault.pk).update(data_size=packs + manifests)
    note_storage_usage(vault, packs + manifests)


def note_storage_usage(vault, size):
    """Rule B1: storage is billed on each day's largest Storage Vault Data Size of the vault."""
    row, created = StorageUsage.objects.get_or_create(
        vault_id=vault.pk,
        day=timezone.now().date(),
        defaults={
            "vault_label": f"{vault.name} ({vault.pk})",
            "account_id": vault.account_id,
            "region_id": vault.region_id,
            "peak_bytes": size,
        },
    )
    if not created:
        StorageUsage.objects.filter(pk=row.pk, peak_bytes__lt=size).update(peak_bytes=size)


def note_storage_usage_of_all_vaults():
    """Every vault's size counts each day, also on days nothing changes it (the hourly task)."""
    for vault in Vault.objects.only("pk", "name", "account_id", "region_id", "data_size").iterator():
        note_storage_usage(vault, vault.data_size)


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


def points_edit_refusal(vault):
    """Why no point of the vault can be deleted or changed by hand now (another app's rule), or None."""
    for guard in POINT_DELETE_GUARDS:
        reason = guard(vault)
        if reason:
            return reason
    return None


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
            _remove_point(locked)
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


def _remove_point(point):
    """The point's rows go now; its manifest object and unneeded chunks go with garbage collection."""
    Pack.objects.get_or_create(
        vault=point.vault, key=point.manifest_key, defaults={"size": point.manifest_size, "is_garbage": True}
    )
    point_id, vault_id = point.id, point.vault_id
    point.delete()
    for listener in POINT_REMOVED:
        transaction.on_commit(lambda listener=listener: listener(point_id, vault_id))


def collect_garbage(vault_id):
    """Delete chunks no point references, rewrite packs that became sparse, then delete empty pack objects.

    Skipped while a backup of the vault is running, so a chunk a running job has
    just reused is never deleted (backups start under the same row lock), and while a
    GC_GUARDS hook says so (a replication copying into the vault).
    """
    from .lifecycle import repack_sparse_packs

    with transaction.atomic():
        vault = Vault.objects.select_for_update().select_related("region").filter(pk=vault_id).first()
        if vault is None:
            return None
        if jobs.active(BackupJob.objects.filter(vault=vault, status=JobStatus.RUNNING)).exists():
            return None
        if any(guard(vault) for guard in GC_GUARDS):
            return None
        dead = Chunk.objects.filter(vault=vault, pointchunk__isnull=True)
        dead_count = dead.count()
        Chunk.objects.filter(pk__in=dead.values("pk")).delete()
    repacked = repack_sparse_packs(vault)
    with transaction.atomic():
        Pack.objects.filter(vault=vault, is_garbage=False, chunks__isnull=True).exclude(
            key__contains="/manifests/"
        ).update(is_garbage=True)
        doomed = list(Pack.objects.filter(vault=vault, is_garbage=True).values_list("pk", "key"))
    store = region_store(vault.region)
    removed = []
    for pk, key in doomed:
        try:
            store.delete(key)
        except ObjectStoreError:
            log.warning("Could not delete %s; the next collection retries", key)
            continue
        removed.append(pk)
    Pack.objects.filter(pk__in=removed).delete()
    refresh_data_size(vault)
    return {
        "chunks": dead_count,
        "repacked": repacked,
        "objects": len(removed),
        "orphans": sweep_orphans(vault, store),
    }


# Older than this, an object no row names is an orphan: a worker writes a pack's or a manifest's row
# seconds after the object, so only a worker that died in between leaves one.
ORPHAN_AGE = timedelta(hours=1)


def sweep_orphans(vault, store):
    """Delete the vault's stored objects that no row names (packs, archive packs, manifests, torn writes).

    A worker killed after an upload and before its index row leaves such an object:
    never read, but it takes space and Storage Vault Data Size does not count it.
    """
    known = set(Pack.objects.filter(vault=vault).values_list("key", flat=True))
    known.update(BackupPoint.objects.filter(vault=vault).values_list("manifest_key", flat=True))
    cutoff = timezone.now() - ORPHAN_AGE
    swept = 0
    try:
        for area in ("packs/", "archive/", "manifests/"):
            for key, modified in store.list_objects(vault.storage_prefix + area):
                if key not in known and modified < cutoff:
                    store.delete(key)
                    swept += 1
    except ObjectStoreError as exc:
        log.warning("Sweeping %s stopped, the next collection goes on: %s", vault.id, exc)
    if swept:
        log.info("Removed %s orphan objects of %s", swept, vault.id)
    return swept
