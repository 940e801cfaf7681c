"""Backup test support: vaults in Normal state, sources, synchronous jobs, test data and raw store access.

Test data is generated from seeded PRNGs, so every run stores the same bytes and the measured
figures (dedup, stored bytes) are reproducible. What is stored is read back with the raw means
of each backend (the directory on disk, a plain boto3 client), not with the product's store classes.
"""

import itertools
import os
import random
import stat
from pathlib import Path

import blake3
import pytest
from django.conf import settings

from vaults import services
from vaults.dataplane import objectstore
from vaults.dataplane.readback import PointReader
from vaults.models import BackupJob, Vault

KiB = 1024
MiB = 1024 * 1024

# A fixed, distinctive mtime base (with nanoseconds) so the manifest must keep full precision.
MTIME_BASE = 1_700_000_000_123_456_789
_names = itertools.count(1)


# -- the job queue -------------------------------------------------------------------------------


@pytest.fixture
def no_queue(monkeypatch):
    """Tests run backup jobs synchronously with `run_backup_job`; the broker is not involved.

    Transactional tests fire on_commit hooks, which would push tasks to the shared Redis broker
    for a worker that never comes; the queued job ids are recorded instead.
    """
    queued = []
    monkeypatch.setattr("vaults.services.backups._enqueue_backup", queued.append)
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)
    return queued


# -- vaults, sources, jobs -------------------------------------------------------------------------


@pytest.fixture
def normal_vault(make_vault):
    """A factory of vaults whose storage is initialized (status Normal), as backups need."""

    def make(name="vault-1", **kwargs):
        vault = make_vault(name, **kwargs)
        services.initialize_vault_storage(vault.id)
        return Vault.objects.select_related("region", "account", "kms_key").get(pk=vault.pk)

    return make


def owned_bucket(account, region, bucket):
    """The bucket is the account's, unless it has an owner already (rule T2): the row an operator's
    assignment leaves, without creating the bucket (a test may want it missing)."""
    from vaults.models import OssBucket

    if bucket and not OssBucket.objects.filter(region=region, name=bucket).exists():
        OssBucket.objects.create(account=account, region=region, name=bucket, assigned_by_operator=True)
    return bucket


def make_source(account, region, source_type, *, name=None, path="", bucket="", prefix=""):
    """A backup source; a bucket it names is given to its account first, as an operator would."""
    owned_bucket(account, region, bucket)
    return services.create_backup_source(
        actor=None,
        account=account,
        region=region,
        source_type=source_type,
        name=name or f"{source_type}-{next(_names)}",
        path=str(path) if path else "",
        bucket=bucket,
        prefix=prefix,
    )


def run_backup(vault, source, **kwargs):
    """Queue a job through the service and run it here (the function the Celery task calls)."""
    job = services.start_backup(actor=None, vault=vault, source=source, **kwargs)
    services.run_backup_job(job.pk)
    return BackupJob.objects.select_related("point").get(pk=job.pk)


def backup_ok(vault, source, **kwargs):
    job = run_backup(vault, source, **kwargs)
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert job.point is not None
    return job


# -- test data ---------------------------------------------------------------------------------------


def random_bytes(size, seed):
    return random.Random(seed).randbytes(size)


def compressible_bytes(size, seed=0, marker=b""):
    rng = random.Random(seed)
    words = [b"backup", b"vault", b"region", b"replica", b"point", b"chunk", marker or b"pack", b"\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def write(path, data, *, mode=None, mtime_ns=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def build_tree(root, seed=1, big_size=3 * MiB):
    """A file tree with every kind of entry a file backup must keep (rule P1).

    random and compressible files, nested directories, an empty file, an empty directory,
    relative, absolute-dangling and directory symlinks, distinct modes and nanosecond mtimes,
    and a multi-MiB random file that is cut into several chunks.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t = MTIME_BASE + seed * 1_000_000_000
    write(root / "big.bin", random_bytes(big_size, seed), mode=0o644, mtime_ns=t + 1)
    write(root / "notes.txt", compressible_bytes(200 * KiB, seed), mode=0o640, mtime_ns=t + 2)
    write(root / "empty.txt", b"", mode=0o600, mtime_ns=t + 3)
    write(root / "bin" / "run.sh", b"#!/bin/sh\necho hello\n", mode=0o755, mtime_ns=t + 4)
    write(root / "a" / "b" / "c" / "deep.dat", random_bytes(100 * KiB, seed + 1000), mode=0o600, mtime_ns=t + 5)
    write(root / "a" / "small.json", b'{"k": 1}\n', mode=0o444, mtime_ns=t + 6)
    (root / "empty-dir").mkdir()
    os.chmod(root / "empty-dir", 0o750)
    os.symlink("a/b/c/deep.dat", root / "link-rel")
    os.symlink("/nonexistent/target/file", root / "link-dangling")
    os.symlink("b", root / "a" / "link-dir")
    for i, link in enumerate(["link-rel", "link-dangling", "a/link-dir"]):
        os.utime(root / link, ns=(t + 10 + i, t + 10 + i), follow_symlinks=False)
    # directory mtimes last, once their children exist
    for i, d in enumerate(["a/b/c", "a/b", "a", "bin", "empty-dir"]):
        os.utime(root / d, ns=(t + 20 + i, t + 20 + i))
    return root


def snapshot(root):
    """What a point of `root` must hold, read independently of the product: path -> attributes."""
    root = Path(root)
    top = os.lstat(root)
    if stat.S_ISREG(top.st_mode):
        return {root.name: _describe(root, top)}
    expected = {}

    def walk(directory, rel):
        for entry in os.scandir(directory):
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            st = os.lstat(entry.path)
            expected[child_rel] = _describe(Path(entry.path), st)
            if stat.S_ISDIR(st.st_mode):
                walk(entry.path, child_rel)

    walk(root, "")
    return expected


def _describe(path, st):
    info = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
    if stat.S_ISDIR(st.st_mode):
        info["type"] = "dir"
    elif stat.S_ISLNK(st.st_mode):
        info.update(type="symlink", target=os.readlink(path))
    elif stat.S_ISREG(st.st_mode):
        info.update(type="file", data=path.read_bytes())
    else:
        info["type"] = "special"  # FIFOs, sockets, devices: never opened
    return info


def read_point(point):
    """The manifest entries of a point by path, and every file's bytes read back."""
    reader = PointReader(point)
    manifest = reader.manifest()
    entries = {e["path"]: e for e in manifest["entries"]}
    data = {p: b"".join(reader.iter_file(e)) for p, e in entries.items() if e["type"] in ("file", "object")}
    return manifest, entries, data


def assert_point_matches(point, expected):
    """Rule P1: the point holds exactly the expected entries, byte for byte, with modes and mtimes."""
    manifest, entries, data = read_point(point)
    assert sorted(entries) == sorted(expected)
    for path, want in expected.items():
        got = entries[path]
        assert got["type"] == want["type"], path
        assert got["mode"] == want["mode"], (path, oct(got["mode"]), oct(want["mode"]))
        assert got["mtime_ns"] == want["mtime_ns"], path
        if want["type"] == "file":
            assert got["size"] == len(want["data"]), path
            assert data[path] == want["data"], f"{path}: bytes read back differ"
            assert got["hash"] == blake3.blake3(want["data"]).hexdigest(), path
            assert sum(n for _, n in got["chunks"]) == len(want["data"]), path
        elif want["type"] == "symlink":
            assert got["target"] == want["target"], path
            assert not got.get("chunks"), f"{path}: a symlink is recorded as a link, not followed"
    files = [w for w in expected.values() if w["type"] == "file"]
    assert point.files == len(files)
    assert point.size == sum(len(w["data"]) for w in files)
    assert manifest["point"] == point.id and manifest["source_type"] == point.source_type
    return manifest, entries, data


# -- raw access to the stores ----------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store_backend(request):
    """The deployment-wide store backend: local directories, or buckets on moto's S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3_stores")
    return request.param


class RawStore:
    """A region's object store read and written directly: the directory, or the bucket on the endpoint."""

    def __init__(self, region):
        self.config = dict(settings.OBJECT_STORE)
        self.region = region
        if self.config["backend"] == "s3":
            self.bucket = self.config["bucket_template"].format(region=region.code)
        else:
            self.root = Path(self.config["root"]) / region.code

    @property
    def is_s3(self):
        return self.config["backend"] == "s3"

    def client(self):
        return objectstore.s3_client(self.config["endpoint_url"], self.config["access_key"], self.config["secret_key"])

    def sizes(self, prefix=""):
        """key -> size of every object under prefix."""
        if self.is_s3:
            pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}
        base = self.root / prefix
        if not base.exists():
            return {}
        return {str(p.relative_to(self.root)): p.stat().st_size for p in base.rglob("*") if p.is_file()}

    def keys(self, prefix=""):
        return sorted(self.sizes(prefix))

    def read(self, key):
        if self.is_s3:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return (self.root / key).read_bytes()

    def write(self, key, data):
        if self.is_s3:
            self.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        else:
            (self.root / key).write_bytes(data)

    def delete(self, key):
        if self.is_s3:
            self.client().delete_object(Bucket=self.bucket, Key=key)
        else:
            (self.root / key).unlink()

    def everything(self):
        """(key, bytes) of every object in the region's store, whatever vault it belongs to."""
        return [(key, self.read(key)) for key in self.keys()]

    def flip(self, key, offset):
        data = bytearray(self.read(key))
        data[offset] ^= 0x01
        self.write(key, bytes(data))


def stored_bytes_of(vault):
    """Rule V6 measured from the store: the pack and manifest objects of the vault, by size."""
    raw = RawStore(vault.region)
    sizes = raw.sizes(vault.storage_prefix + "packs/")
    sizes.update(raw.sizes(vault.storage_prefix + "manifests/"))
    return sum(sizes.values())
