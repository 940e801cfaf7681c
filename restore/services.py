"""Restore targets and restore jobs: register, start (rules S1-S3), run, report (S4), bill (B2).

A file is written under a temporary name, fsynced, checked against the
manifest's hash and only then renamed into place: a killed or failed restore
never leaves a file that looks complete but is not, and running the job again
finishes it (files already restored are recognised by their hash).
"""

import errno
import logging
import os
import stat
import tempfile
from contextlib import nullcontext
from pathlib import Path, PurePosixPath

import blake3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from console.services import (
    HEARTBEAT_STALE,
    active_jobs,
    audit_refusals,
    fail_lost_jobs,
    record_audit,
    requeue_lost_jobs,
)
from vaults.backup import Progress
from vaults.chunkstore import CorruptData
from vaults.directio import DIRECT_MIN, DirectWriter, write_all
from vaults.keys import KeyProviderError
from vaults.models import SourceType, Tier, VaultType
from vaults.objectstore import (
    BUCKET_NAME_RULE,
    ObjectStoreError,
    is_valid_bucket_name,
    path_refusal,
)
from vaults.readback import PointReader
from vaults.services import open_oss_bucket, oss_bucket_refusal
from vaults.tenantfs import (
    DIRECTORY,
    NOFOLLOW,
    InTheWay,
    OpenRoot,
    UnsafePath,
    clean_prefix,
    join_key,
    key_problem,
    kind_of,
    lookup,
    open_parent,
    open_regular,
    prefix_refusal,
)

from .models import KIND_FOR_SOURCE, Existing, Network, RestoreJob, RestoreTarget, TargetKind

log = logging.getLogger(__name__)


class RestoreFailed(Exception):
    """The restore cannot finish; the message names the file where it can."""


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


def start_restore(*, actor, point, target, sub_path="", files=(), existing=Existing.FAIL):
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
        sub = _clean_sub_path(sub_path)
        files = [_clean_sub_path(f) for f in files or ()]
        with transaction.atomic():
            # one restore at a time per target: two writing into the same place would race each other
            RestoreTarget.objects.select_for_update().filter(pk=target.pk).first()
            if running := active_jobs(RestoreJob.objects.filter(target=target)).first():
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
            )
            transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id):
    from .tasks import run_restore_job_task

    try:
        run_restore_job_task.delay(job_id)
    except Exception as exc:  # the broker is down: the job says so
        log.exception("Cannot enqueue restore job %s", job_id)
        RestoreJob.objects.filter(pk=job_id, status=RestoreJob.Status.QUEUED).update(
            status=RestoreJob.Status.FAILED,
            error=f"The task queue could not be reached: {exc}",
            finished=timezone.now(),
        )


def _claim(job_id):
    with transaction.atomic():
        job = (
            RestoreJob.objects.select_for_update(of=("self",))
            .select_related("point__vault__region", "target__region")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.status in (RestoreJob.Status.SUCCEEDED, RestoreJob.Status.FAILED):
            return None
        now = timezone.now()
        if job.status == RestoreJob.Status.RUNNING and job.heartbeat and now - job.heartbeat < HEARTBEAT_STALE:
            return None
        job.status, job.started, job.heartbeat, job.error = RestoreJob.Status.RUNNING, job.started or now, now, ""
        job.save(update_fields=["status", "started", "heartbeat", "error"])
    return job


def run_restore_job(job_id):
    """Run (or finish) a restore job; it ends succeeded with its report, or failed with the reason."""
    job = _claim(job_id)
    if job is None:
        return None
    try:
        report = _run(job)
    except (RestoreFailed, ObjectStoreError, KeyProviderError, CorruptData) as exc:
        _finish(job, RestoreJob.Status.FAILED, str(exc))
        return None
    except Exception as exc:  # never leave a job running with nobody on it
        log.exception("Restore job %s failed", job_id)
        _finish(job, RestoreJob.Status.FAILED, f"Unexpected error: {exc.__class__.__name__}: {exc}")
        return None
    _finish(job, RestoreJob.Status.SUCCEEDED, "", report)
    job.refresh_from_db()
    return job


def _finish(job, status, error, report=None):
    with transaction.atomic():
        fields = {"status": status, "error": error[:2000], "finished": timezone.now()}
        if report is not None:
            fields["report"] = report
        RestoreJob.objects.filter(pk=job.pk).update(**fields)
        vault_region = job.target.region.code
        record_audit(
            actor=None,
            action="run_restore",
            object_type="restore_job",
            object_id=job.pk,
            account=job.account,
            region_code=vault_region,
            outcome="success" if status == RestoreJob.Status.SUCCEEDED else "failed",
            reason=error,
            **({"files": report["files_written"], "bytes": report["bytes_written"]} if report else {}),
        )


def requeue_lost_restore_jobs():
    """Restore jobs whose message was lost are queued again (they would wait for ever)."""
    return requeue_lost_jobs(RestoreJob, _enqueue)


def vault_delete_guard(vault):
    """Rule V7: a vault being restored from is not deleted under the job."""
    if active_jobs(RestoreJob.objects.filter(vault=vault)).exists():
        return "A restore job from this vault is queued or running: delete the vault once it has finished."
    return None


def gc_guard(vault):
    """A running restore reads the vault's packs where the index said they were: collection waits for it."""
    return active_jobs(RestoreJob.objects.filter(vault=vault, status=RestoreJob.Status.RUNNING)).exists()


def reap_stale_restore_jobs():
    """Jobs whose worker died end as failed (and audited); running them again finishes them."""
    return fail_lost_jobs(
        RestoreJob.objects.select_related("target__region", "account"),
        lambda job: {
            "status": RestoreJob.Status.FAILED,
            "finished": timezone.now(),
            "error": "The worker running this restore stopped. Start it again: files already restored are kept.",
        },
        lambda job: {
            "action": "run_restore",
            "object_type": "restore_job",
            "object_id": job.pk,
            "account": job.account,
            "region_code": job.target.region.code,
        },
    )


def select_entries(entries, sub_path, files):
    """The manifest entries a job restores: all, a sub-tree, or a list of paths."""
    chosen = []
    for entry in entries:
        path = entry["path"]
        problem = key_problem(path, max_bytes=None) if isinstance(path, str) else "is not a path"
        if problem:  # rule T1: a restore writes only inside its target
            raise RestoreFailed(f"Refusing a path of the point that {problem}: {path!r}; nothing was written.")
        if files and path not in files:
            continue
        if sub_path and not (path == sub_path or path.startswith(sub_path + "/")):
            continue
        chosen.append(entry)
    if (files or sub_path) and not chosen:
        raise RestoreFailed(f"Nothing in the point matches {sub_path or ', '.join(files)}.")
    return chosen


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
    RestoreJob.objects.filter(pk=job.pk).update(
        files_total=len(data_entries), bytes_total=sum(e["size"] for e in data_entries)
    )
    stats = {"files_written": 0, "bytes_written": 0, "files_skipped": 0, "skipped": [], "verified": 0}
    billed = target.sends_over_internet  # rule B2: outbound traffic

    def save(progress):
        RestoreJob.objects.filter(pk=job.pk).update(
            files_done=progress.files,
            bytes_done=progress.bytes,
            bytes_written=stats["bytes_written"],
            files_skipped=stats["files_skipped"],
            files_verified=stats["verified"],
            internet_bytes=stats["bytes_written"] if billed else 0,
            heartbeat=timezone.now(),
        )

    progress = Progress(save)
    try:
        if target.is_bucket:
            _restore_to_bucket(job, reader, data_entries, progress, stats)
        else:
            _restore_to_tree(job, reader, entries, progress, stats)
    finally:  # what was sent before a failure is counted (and billed) too
        progress.tick(force=True)
    internet = stats["bytes_written"] if billed else 0
    stats["skipped"] = stats["skipped"][:100]
    stats["internet_bytes"] = internet
    return stats


def _file_hash(fd, size):
    """The hash of the first `size` bytes and whether the file ends there (a file still growing does not)."""
    hasher = blake3.blake3()
    left = size
    while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
        hasher.update(block)
        left -= len(block)
    return hasher.hexdigest() if left == 0 and not os.read(fd, 1) else None


def _write_verified(reader, entry, fd, on_bytes):
    """Write an entry's data into a new, empty file open at `fd`, fsync it and check it (rule S4).

    The caller removes the file when this raises.
    """
    hasher = blake3.blake3()
    try:
        # large files go around the page cache, as packs do (vaults/directio.py)
        with DirectWriter(None, fd) if entry.get("size", 0) >= DIRECT_MIN else nullcontext() as direct:
            for data in reader.iter_file(entry):
                if direct:
                    direct.write(data)
                else:
                    write_all(fd, data)
                hasher.update(data)
                on_bytes(len(data))
            if direct:
                direct.finish()
        os.fsync(fd)
    except CorruptData as exc:
        raise RestoreFailed(
            f"{entry['path']}: the backup data is damaged ({exc}); nothing was written under its name."
        ) from exc
    if hasher.hexdigest() != entry["hash"]:
        raise RestoreFailed(f"{entry['path']}: the restored data does not match its hash; nothing was written.")


class _Target:
    """A target directory opened once; every entry is reached from it without following a link (rule T1)."""

    def __init__(self, target):
        try:
            self.root = OpenRoot(target.location, check=lambda real: path_refusal(real, target.account), want_dir=True)
        except UnsafePath as exc:
            raise RestoreFailed(str(exc)) from None
        if not os.access(f"/proc/self/fd/{self.root.fd}", os.W_OK | os.X_OK):
            self.root.close()
            raise RestoreFailed(f"The target directory {target.location} is not writable.")

    def close(self):
        if self._staging is not None:
            os.close(self._staging)
            try:
                os.rmdir(self._staging_name, dir_fd=self.root.fd)
            except OSError:
                pass  # not empty (a crash) or moved away: the next run of the job uses it again
        self.root.close()

    _staging = None

    def staging(self, job_id):
        """A directory of the target's that only the worker's user can enter (0700), opened once."""
        if self._staging is None:
            self._staging_name = f".restore-{job_id}.staging"
            try:
                os.mkdir(self._staging_name, 0o700, dir_fd=self.root.fd)
            except FileExistsError:
                pass
            fd = os.open(self._staging_name, DIRECTORY, dir_fd=self.root.fd)
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                os.close(fd)
                raise RestoreFailed(f"{self._staging_name} in the target is not the restore's own; remove it.")
            self._staging = fd
        return self._staging

    def parent(self, entry, *, create):
        """(descriptor of the directory holding the entry, its name); the caller closes the descriptor."""
        parts = entry["path"].split("/")
        try:
            return open_parent(self.root.fd, parts, create=create), parts[-1]
        except InTheWay as exc:
            raise RestoreFailed(
                f"{entry['path']}: the target has {exc.what} at {exc.where}, where the point has a directory; "
                "move it away and run the restore again."
            ) from None

    def has_clash(self, entry):
        """Rule S4's "fail if it exists": something is there that is not exactly the entry."""
        try:
            fd, name = self.parent(entry, create=False)
        except (FileNotFoundError, RestoreFailed):
            return False  # no such directory yet (or a file in the way: the restore says so when it gets there)
        try:
            return lookup(fd, name) is not None and not _already_restored(fd, name, entry)
        finally:
            os.close(fd)


def _restore_to_tree(job, reader, entries, progress, stats):
    target = _Target(job.target)
    try:
        _restore_entries(job, target, reader, entries, progress, stats)
    finally:
        target.close()


def _restore_entries(job, target, reader, entries, progress, stats):
    """Every step answers for its entry: a file system error becomes the job's reason, naming the path."""
    existing = job.existing
    if existing == Existing.FAIL:
        clashes = [e["path"] for e in entries if e["type"] != "dir" and _checked(e, target.has_clash, e)]
        if clashes:
            raise RestoreFailed(
                f"{len(clashes)} file(s) already exist in the target, first {clashes[0]}; "
                "nothing was written. Choose skip or overwrite."
            )
    dirs = []
    for entry in entries:
        if entry["type"] == "dir":
            dirs.append(entry)
            _checked(entry, _make_dir, target, entry)
        else:
            _checked(entry, _restore_one, job, target, reader, entry, progress, stats)
    for entry in reversed(dirs):  # deepest first, so writing inside does not move their mtime again
        _checked(entry, _finish_dir, target, entry)


def _checked(entry, step, *args):
    try:
        return step(*args)
    except OSError as exc:
        raise RestoreFailed(f"{entry['path']}: cannot write in the target ({exc.strerror}).") from exc


def _finish_dir(target, entry):
    fd = _open_dir(target, entry)
    try:
        os.chmod(fd, entry["mode"] & SAFE_DIR_MODE)
        os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    finally:
        os.close(fd)


def _make_dir(target, entry):
    fd, name = target.parent(entry, create=True)
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        there = lookup(fd, name)
        if there is None or not stat.S_ISDIR(there.st_mode):
            what = kind_of(there.st_mode) if there else "nothing it can use"
            raise RestoreFailed(
                f"{entry['path']}: the target has {what} there, where the point has a directory; move it away."
            )
    finally:
        os.close(fd)


def _open_dir(target, entry):
    """A directory entry of the point, opened in the target (it was made there) without following a link."""
    fd, name = target.parent(entry, create=False)
    try:
        return os.open(name, DIRECTORY, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RestoreFailed(
                f"{entry['path']}: the target has a file there, where the point has a directory; move it away."
            ) from None
        raise
    finally:
        os.close(fd)


def _restore_one(job, target, reader, entry, progress, stats):
    """Put one file or symlink in place: a temporary file beside it, checked, then renamed over the name."""
    kind = entry["type"]
    fd, name = target.parent(entry, create=True)
    try:
        there = lookup(fd, name)
        if there is not None:
            if stat.S_ISDIR(there.st_mode):
                raise RestoreFailed(
                    f"{entry['path']}: the target has a directory there, where the point has a file; move it away."
                )
            if _already_restored(fd, name, entry):
                if kind == "file":
                    stats["files_skipped"] += 1
                    stats["skipped"].append({"path": entry["path"], "reason": "already identical"})
                    progress.add_bytes(entry["size"])
                    progress.add_file()
                return
            if job.existing == Existing.SKIP:
                stats["skipped"].append({"path": entry["path"], "reason": "exists"})
                if kind == "file":
                    stats["files_skipped"] += 1
                    progress.add_bytes(entry["size"])
                    progress.add_file()
                return
        tmp = _part_name(name, job.pk)
        if kind == "symlink":
            _put_symlink(target.staging(job.pk), fd, name, entry)
            return
        _unlink(fd, tmp)
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600, dir_fd=fd)
            try:
                _write_verified(reader, entry, out, progress.add_bytes)
                os.chmod(out, entry["mode"] & SAFE_FILE_MODE)
                os.utime(out, ns=(entry["mtime_ns"], entry["mtime_ns"]))
            finally:
                os.close(out)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link in the way, never follows it
        except BaseException:
            _unlink(fd, tmp)  # nothing half-done is left behind
            raise
    except IsADirectoryError:
        raise RestoreFailed(
            f"{entry['path']}: the target has a directory there, where the point has a file; move it away."
        ) from None
    finally:
        os.close(fd)
    stats["files_written"] += 1
    stats["bytes_written"] += entry["size"]
    stats["verified"] += 1
    progress.add_file()


# A restore gives back permissions, never privileges: the worker may run as root and owns what it writes.
SAFE_FILE_MODE, SAFE_DIR_MODE = 0o777, 0o1777


def _part_name(name, job_id):
    """The temporary name of an entry being written beside it: never the name of another entry."""
    part = f".{name}.restore-{job_id}.part"
    if len(part.encode("utf-8", "surrogateescape")) <= 255:
        return part
    return f".restore-{job_id}-{blake3.blake3(name.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.part"


def _put_symlink(staging_fd, dir_fd, name, entry):
    """Make the link and set its time in a directory only the worker can enter, then move it into place,
    so nobody can swap the new link for a hard link to another file between the two steps."""
    tmp = "link-" + blake3.blake3(entry["path"].encode("utf-8", "surrogateescape")).hexdigest()[:32]
    _unlink(staging_fd, tmp)
    os.symlink(entry["target"], tmp, dir_fd=staging_fd)
    try:
        os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=staging_fd, follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=staging_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink(staging_fd, tmp)
        raise


def _unlink(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _already_restored(dir_fd, name, entry):
    """A file (or symlink) a previous run of the job, or anyone, already wrote exactly like this."""
    try:
        if entry["type"] == "symlink":
            st = lookup(dir_fd, name)
            return st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dir_fd) == entry["target"]
        if entry["type"] != "file":
            return False
        fd, st = open_regular(dir_fd, name)
    except (OSError, UnsafePath):
        return False
    try:
        return st.st_size == entry["size"] and _file_hash(fd, entry["size"]) == entry["hash"]
    finally:
        os.close(fd)


def _restore_to_bucket(job, reader, entries, progress, stats):
    target = job.target
    bucket = open_oss_bucket(account=target.account, region=target.region, name=target.location)
    existing = job.existing
    try:  # rule T1: every key lies under the target's prefix
        keys = {e["path"]: join_key(target.prefix, e["path"]) for e in entries}
    except UnsafePath as exc:
        raise RestoreFailed(f"Refusing a key outside the target's prefix: {exc}.") from None
    if existing == Existing.FAIL:
        clashes = [path for path, key in keys.items() if bucket.exists(key)]
        if clashes:
            raise RestoreFailed(
                f"{len(clashes)} object(s) already exist in the bucket, first {clashes[0]}; "
                "nothing was written. Choose skip or overwrite."
            )
    work = Path(settings.DATA_DIR) / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        key = keys[entry["path"]]
        if existing == Existing.SKIP and bucket.exists(key):
            stats["files_skipped"] += 1
            stats["skipped"].append({"path": entry["path"], "reason": "exists"})
            progress.add_bytes(entry["size"])
            progress.add_file()
            continue
        fd, name = tempfile.mkstemp(dir=work, prefix=f"restore-{job.pk}-")
        try:
            try:
                _write_verified(reader, entry, fd, progress.add_bytes)
            finally:
                os.close(fd)
            bucket.put_file(key, name, entry.get("content_type"))
        finally:
            os.unlink(name)
        stats["files_written"] += 1
        stats["bytes_written"] += entry["size"]
        stats["verified"] += 1
        progress.add_file()
