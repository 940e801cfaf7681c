"""Restore targets and restore jobs: register, start (rules S1-S3), run, report (S4), bill (B2).

The files are written by `restore.writer`.
"""

import logging
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.db import transaction

from console import jobs
from console.models import JobStatus
from console.services import audit_refusals, record_audit
from vaults.dataplane.backup import Progress
from vaults.dataplane.chunkstore import CorruptData
from vaults.dataplane.keys import KeyProviderError
from vaults.dataplane.objectstore import (
    BUCKET_NAME_RULE,
    ObjectStoreError,
    is_valid_bucket_name,
    path_refusal,
)
from vaults.dataplane.readback import PointReader
from vaults.dataplane.tenantfs import (
    clean_prefix,
    prefix_refusal,
)
from vaults.models import SourceType, Tier, VaultType
from vaults.services import oss_bucket_refusal

from .models import KIND_FOR_SOURCE, Existing, Network, OnDamage, RestoreJob, RestoreTarget, TargetKind
from .writer import RestoreFailed, restore_to_bucket, restore_to_tree, select_entries

log = logging.getLogger(__name__)


def create_restore_target(*, actor, account, region, kind, name, location, prefix="", network=Network.INTERNET):
    """Register a prepared resource of a region (rule S2): a directory, or an OSS bucket and prefix."""
    with audit_refusals(
        "create_restore_target", actor=actor, account=account, region_code=region.code, object_type="restore_target"
    ):
        errors = {}
        name = (name or "").strip()
        location = (location or "").strip()
        if not name or len(name) > 64:
            errors["name"] = "Enter a name of at most 64 characters."
        elif RestoreTarget.objects.filter(account=account, region=region, name=name).exists():
            errors["name"] = f"A restore target named {name!r} already exists in {region.name}."
        if kind not in TargetKind.values:
            errors["kind"] = f"Unknown kind of restore target {kind!r}."
        elif kind == TargetKind.OSS_BUCKET:
            if not is_valid_bucket_name(location):
                errors["location"] = BUCKET_NAME_RULE
            elif reason := oss_bucket_refusal(account=account, region=region, name=location):
                errors["location"] = reason
            try:
                prefix = clean_prefix(prefix)
            except ValueError as exc:
                errors["prefix"] = str(exc)
        elif not location.startswith("/"):
            errors["location"] = "Enter an absolute directory path the restore worker can write."
        elif reason := path_refusal(location, account):
            errors["location"] = reason
        if network not in Network.values:
            errors["network"] = f"Unknown network {network!r}."
        # a disabled region takes new restore targets: its vaults stay restorable (rule G2)
        if errors:
            raise ValidationError(errors)
        with transaction.atomic():
            target = RestoreTarget.objects.create(
                account=account,
                region=region,
                kind=kind,
                name=name,
                location=location,
                prefix=prefix if kind == TargetKind.OSS_BUCKET else "",
                network=network if kind in (TargetKind.ON_PREMISES_NAS, TargetKind.LOCAL_SERVER) else Network.VPN,
            )
            record_audit(
                actor=actor,
                action="create_restore_target",
                object_type="restore_target",
                object_id=target.pk,
                account=account,
                region_code=region.code,
                name=name,
                kind=kind,
                location=location,
            )
    return target


def restore_refusal(point, target):
    """Rules S1-S3 (and the archive tier): why this point cannot be restored to this target, or None."""
    vault = point.vault
    if target.account_id != vault.account_id:
        return "The restore target belongs to another account."
    if target.region_id != vault.region_id:
        return (
            f"The restore target is in {target.region.name}; a point of a vault in {vault.region.name} "
            "restores only to resources of that region."
        )
    wanted = KIND_FOR_SOURCE.get(point.source_type)
    if wanted != target.kind:
        return (
            f"A {point.get_source_type_display()} point restores to a {TargetKind(wanted).label}, "
            f"not to a {target.get_kind_display()}."
        )
    if reason := point_restore_refusal(point):
        return reason
    if target.is_bucket:
        reason = oss_bucket_refusal(account=target.account, region=target.region, name=target.location)
        return reason or prefix_refusal(target.prefix)
    return path_refusal(target.location, target.account)


def point_restore_refusal(point):
    """Rule S3 and the archive tier: why this point cannot be restored to any target, or None."""
    if point.source_type == SourceType.VMWARE_VM and point.vault.vault_type == VaultType.REPLICATION_TARGET:
        return "VMware VM points cannot be restored from a Replication Target vault (rule S3)."
    if point.tier == Tier.ARCHIVE:
        return "The point is in the archive tier: bring it back to the standard tier first (vault page)."
    return None


def targets_for(point):
    """The targets a point can be restored to: its vault's region and account, the matching kind."""
    if point.source_type == SourceType.VMWARE_VM and point.vault.vault_type == VaultType.REPLICATION_TARGET:
        return RestoreTarget.objects.none()  # rule S3
    return RestoreTarget.objects.filter(
        account=point.vault.account_id, region=point.vault.region_id, kind=KIND_FOR_SOURCE.get(point.source_type)
    )


def _clean_sub_path(sub_path):
    sub = PurePosixPath((sub_path or "").strip().strip("/"))
    if sub.is_absolute() or ".." in sub.parts:
        raise ValidationError({"sub_path": "Give a path inside the backup point, without '..'."})
    return "" if str(sub) == "." else str(sub)


def start_restore(*, actor, point, target, sub_path="", files=(), existing=Existing.FAIL, on_damage=OnDamage.FAIL):
    """Queue a restore job of one point (or part of it) to a prepared target of the same region."""
    vault = point.vault
    with audit_refusals(
        "start_restore",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="backup_point",
        object_id=point.id,
    ):
        reason = restore_refusal(point, target)
        if reason:
            raise ValidationError(reason)
        if existing not in Existing.values:
            raise ValidationError({"existing": f"Unknown choice {existing!r}."})
        if on_damage not in OnDamage.values:
            raise ValidationError({"on_damage": f"Unknown choice {on_damage!r}."})
        sub = _clean_sub_path(sub_path)
        files = [_clean_sub_path(f) for f in files or ()]
        with transaction.atomic():
            # one restore at a time per target: two writing into the same place would race each other
            RestoreTarget.objects.select_for_update().filter(pk=target.pk).first()
            if running := jobs.active(RestoreJob.objects.filter(target=target)).first():
                raise ValidationError(
                    f"A restore into {target.name} is already {running.status} (job {running.pk}): "
                    "it must end before another starts."
                )
            job = RestoreJob.objects.create(
                account=vault.account,
                vault=vault,
                point=point,
                point_label=point.id,
                target=target,
                sub_path=sub,
                files=files,
                existing=existing,
                on_damage=on_damage,
                # rule B2: free from a replica into its region; over the Internet the bytes sent are billed
                is_free=vault.vault_type == VaultType.REPLICATION_TARGET and not target.sends_over_internet,
            )
            record_audit(
                actor=actor,
                action="start_restore",
                object_type="restore_job",
                object_id=job.pk,
                account=vault.account,
                region_code=vault.region.code,
                point=point.id,
                target=target.name,
                sub_path=sub,
                on_damage=on_damage,
            )
            transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id):
    jobs.enqueue(RESTORE, job_id)


def _audit_of(job):
    return {
        "action": "run_restore",
        "object_type": "restore_job",
        "object_id": job.pk,
        "account": job.account,
        "region_code": job.target.region.code,
    }


RESTORE = jobs.register(
    jobs.JobKind(
        model=RestoreJob,
        task="restore.tasks.run_restore_job_task",
        audit=_audit_of,
        lost="The worker running this restore stopped. Start it again: files already restored are kept.",
        related=("point__vault__region", "target__region", "account"),
    )
)


def run_restore_job(job_id):
    """Run (or finish) a restore job; it ends succeeded with its report, or failed with the reason."""
    return jobs.run(
        RESTORE, job_id, _restore, expected=(RestoreFailed, ObjectStoreError, KeyProviderError, CorruptData)
    )


def _restore(job):
    report = _run(job)
    detail = {"files": report["files_written"], "bytes": report["bytes_written"], "damaged": report["files_damaged"]}
    jobs.finish(RESTORE, job, JobStatus.SUCCEEDED, report=report, detail=detail)
    job.refresh_from_db()
    return job


def vault_delete_guard(vault):
    """Rule V7: a vault being restored from is not deleted under the job."""
    if jobs.active(RestoreJob.objects.filter(vault=vault)).exists():
        return "A restore job from this vault is queued or running: delete the vault once it has finished."
    return None


def gc_guard(vault):
    """A running restore reads the vault's packs where the index said they were: collection waits for it."""
    return jobs.active(RestoreJob.objects.filter(vault=vault, status=JobStatus.RUNNING)).exists()


def _run(job):
    point, target = job.point, job.target
    if point is None:
        raise RestoreFailed("The backup point no longer exists.")
    reason = restore_refusal(point, target)
    if reason:
        raise RestoreFailed(reason)
    reader = PointReader(point)
    entries = select_entries(reader.manifest()["entries"], job.sub_path, job.files)
    data_entries = [e for e in entries if e["type"] in ("file", "object")]
    jobs.beat(job, files_total=len(data_entries), bytes_total=sum(e["size"] for e in data_entries))
    stats = {"files_written": 0, "bytes_written": 0, "files_skipped": 0, "skipped": [], "verified": 0, "damaged": []}
    billed = target.sends_over_internet  # rule B2: outbound traffic
    # what earlier attempts of the job sent (a worker stopped, the job resumed) stays counted and billed
    sent_before = job.bytes_written

    def sent():
        return sent_before + stats["bytes_written"]

    def save(progress):
        jobs.beat(
            job,
            files_done=progress.files,
            bytes_done=progress.bytes,
            bytes_written=sent(),
            files_skipped=stats["files_skipped"],
            files_verified=stats["verified"],
            internet_bytes=sent() if billed else 0,
        )

    progress = Progress(save)
    try:
        if target.is_bucket:
            restore_to_bucket(job, reader, data_entries, progress, stats)
        else:
            restore_to_tree(job, reader, entries, progress, stats)
    finally:  # what was sent before a failure is counted (and billed) too
        progress.tick(force=True)
    internet = sent() if billed else 0
    stats["skipped"] = stats["skipped"][:100]
    stats["files_damaged"] = len(stats["damaged"])  # left out (OnDamage.INTACT); the list names the first 100
    stats["damaged"] = stats["damaged"][:100]
    stats["internet_bytes"] = internet
    return stats
