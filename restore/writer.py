"""The restore writer: a point's entries into a directory tree or under a bucket prefix (rules S3, S4, T1).

A file is written under a temporary name in its opened directory, fsynced, checked
against the manifest's hash and only then renamed into place: a killed or failed
restore never leaves a file that looks complete but is not, and running the job
again finishes it (files already restored are recognised by their hash). Every
directory is opened relative to its parent's descriptor, never through a link.
"""

import errno
import os
import stat
import tempfile
from contextlib import nullcontext
from pathlib import Path

import blake3
from django.conf import settings

from vaults.dataplane.chunkstore import CorruptData
from vaults.dataplane.directio import DIRECT_MIN, DirectWriter, write_all
from vaults.dataplane.objectstore import ObjectStoreError, path_refusal
from vaults.dataplane.tenantfs import (
    DIRECTORY,
    NOFOLLOW,
    InTheWay,
    OpenRoot,
    UnsafePath,
    join_key,
    key_problem,
    kind_of,
    lookup,
    open_parent,
    open_regular,
)
from vaults.services import open_oss_bucket

from .models import Existing, OnDamage


class RestoreFailed(Exception):
    """The restore cannot finish; the message names the file where it can."""


class DamagedData(RestoreFailed):
    """One file's backup data is damaged: the others may still be restored (OnDamage.INTACT)."""


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
        raise DamagedData(
            f"{entry['path']}: the backup data is damaged ({exc}); nothing was written under its name."
        ) from exc
    if hasher.hexdigest() != entry["hash"]:
        raise DamagedData(f"{entry['path']}: the restored data does not match its hash; nothing was written.")


def _write_intact(job, reader, entry, fd, progress, stats):
    """_write_verified, except that with OnDamage.INTACT a damaged file is listed and left out (returns False)."""
    written = 0

    def on_bytes(n):
        nonlocal written
        written += n
        progress.add_bytes(n)

    try:
        _write_verified(reader, entry, fd, on_bytes)
    except DamagedData as exc:
        if job.on_damage != OnDamage.INTACT:
            raise
        stats["damaged"].append({"path": entry["path"], "reason": str(exc)})
        progress.add_bytes(max(0, entry["size"] - written))  # the file is dealt with: left out
        progress.add_file()
        return False
    return True


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


def restore_to_tree(job, reader, entries, progress, stats):
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
                if not _write_intact(job, reader, entry, out, progress, stats):
                    _unlink(fd, tmp)
                    return
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


def _object_holds(bucket, key, entry):
    """The bucket's object at `key` is exactly the entry's data (by size and hash)."""
    hasher, size = blake3.blake3(), 0
    try:
        body = bucket.open(key)
        try:
            while block := body.read(1 << 20):
                hasher.update(block)
                size += len(block)
        finally:
            body.close()
    except (OSError, ObjectStoreError):
        return False
    return size == entry["size"] and hasher.hexdigest() == entry["hash"]


def restore_to_bucket(job, reader, entries, progress, stats):
    target = job.target
    bucket = open_oss_bucket(account=target.account, region=target.region, name=target.location)
    existing = job.existing
    try:  # rule T1: every key lies under the target's prefix
        keys = {e["path"]: join_key(target.prefix, e["path"]) for e in entries}
    except UnsafePath as exc:
        raise RestoreFailed(f"Refusing a key outside the target's prefix: {exc}.") from None
    identical = set()  # with "fail": objects already exactly the entry (an earlier attempt of this job wrote them)
    if existing == Existing.FAIL:
        there = [e for e in entries if bucket.exists(keys[e["path"]])]
        clashes = [e["path"] for e in there if not _object_holds(bucket, keys[e["path"]], e)]
        if clashes:
            raise RestoreFailed(
                f"{len(clashes)} object(s) already exist in the bucket, first {clashes[0]}; "
                "nothing was written. Choose skip or overwrite."
            )
        identical = {e["path"] for e in there}
    work = Path(settings.DATA_DIR) / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        key = keys[entry["path"]]
        if entry["path"] in identical or (existing == Existing.SKIP and bucket.exists(key)):
            reason = "already identical" if entry["path"] in identical else "exists"
            stats["files_skipped"] += 1
            stats["skipped"].append({"path": entry["path"], "reason": reason})
            progress.add_bytes(entry["size"])
            progress.add_file()
            continue
        fd, name = tempfile.mkstemp(dir=work, prefix=f"restore-{job.pk}-")
        try:
            try:
                intact = _write_intact(job, reader, entry, fd, progress, stats)
            finally:
                os.close(fd)
            if not intact:
                continue
            bucket.put_file(key, name, entry.get("content_type"))
        finally:
            os.unlink(name)
        stats["files_written"] += 1
        stats["bytes_written"] += entry["size"]
        stats["verified"] += 1
        progress.add_file()
