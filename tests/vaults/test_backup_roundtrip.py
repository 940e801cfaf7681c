"""Backup round trips (rules P1, P2): what a backup stores reads back byte for byte, per data source type.

Every source type runs on the local default (a directory per region); a representative subset, OSS
and the missing bucket also run on S3 (a bucket per region on moto's S3 server). There is no restore
yet, so points are read back with `PointReader`.
"""

import uuid
from pathlib import Path

import blake3
import pytest
from django.conf import settings

from tests.vaults.conftest import (
    KiB,
    MiB,
    RawStore,
    assert_point_matches,
    backup_ok,
    build_tree,
    compressible_bytes,
    make_source,
    random_bytes,
    read_point,
    run_backup,
    snapshot,
    write,
)
from vaults.dataplane.chunkstore import CHUNK_MAX
from vaults.dataplane.objectstore import s3_client
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint, SourceType

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]

FILE_TREE_TYPES = [
    SourceType.ECS_FILE,
    SourceType.NAS,
    SourceType.CPFS,
    SourceType.ON_PREMISES_NAS,
    SourceType.ON_PREMISES_FILE,
]


def build_vm_image(root, seed):
    """A whole-machine image as a directory: a disk with data and zero runs, config, nvram, an empty dir."""
    root = Path(root)
    disk = bytearray()
    for i in range(8):  # 512 KiB blocks: random, zeros, random, ...
        disk += random_bytes(512 * KiB, seed * 100 + i) if i % 2 == 0 else bytes(512 * KiB)
    write(root / "disk0.vmdk", bytes(disk), mode=0o600, mtime_ns=1_650_000_000_000_000_001)
    write(
        root / "vm.vmx", b'displayName = "web-01"\nmemsize = "4096"\n', mode=0o644, mtime_ns=1_650_000_000_000_000_002
    )
    write(root / "nvram", random_bytes(8 * KiB, seed), mode=0o644, mtime_ns=1_650_000_000_000_000_003)
    (root / "snapshots").mkdir()
    return root


def assert_clean(vault):
    report = verify_vault(vault)
    assert report["problems"] == []
    return report


# Every type on the local default; a representative subset on S3 too (keeps the suite fast).
@pytest.mark.parametrize(
    "store_backend,source_type",
    [("local", t) for t in FILE_TREE_TYPES] + [("s3", SourceType.ECS_FILE), ("s3", SourceType.ON_PREMISES_NAS)],
    indirect=["store_backend"],
)
def test_file_tree_round_trip(store_backend, tmp_path, account, region, normal_vault, source_type):
    # rule P1: every file's bytes, modes, nanosecond mtimes, symlinks as links with their target,
    # empty files and empty directories; rule P2: for each file-tree data source type
    root = build_tree(tmp_path / "src", seed=3)
    expected = snapshot(root)
    assert {"empty.txt", "empty-dir", "link-rel", "link-dangling", "a/link-dir", "a/b/c/deep.dat"} <= set(expected)
    vault = normal_vault()
    source = make_source(account, region, source_type, path=root)

    job = backup_ok(vault, source)

    point = job.point
    assert (point.vault_id, point.source_id, point.source_type, point.source_location) == (
        vault.id,
        source.pk,
        source_type,
        str(root),
    )
    _, entries, _ = assert_point_matches(point, expected)
    assert len(entries["big.bin"]["chunks"]) >= 3, "a multi-MiB file is cut into several chunks"
    assert max(n for _, n in entries["big.bin"]["chunks"]) <= CHUNK_MAX
    assert entries["empty.txt"]["size"] == 0 and entries["empty.txt"]["chunks"] == []
    assert entries["empty-dir"]["type"] == "dir"
    assert entries["link-dangling"]["target"] == "/nonexistent/target/file"
    assert not any(p.startswith("a/link-dir/") for p in entries), "a symlink to a directory is not followed"
    # the job's own figures agree with the data
    assert job.files_done == point.files == 6
    assert job.bytes_done == point.size
    assert job.bytes_stored > 0 and job.warnings == []
    assert assert_clean(vault)["files"] == 6


@pytest.mark.parametrize(
    "store_backend,source_type",
    [("local", SourceType.ECS_INSTANCE), ("local", SourceType.VMWARE_VM), ("s3", SourceType.VMWARE_VM)],
    indirect=["store_backend"],
)
def test_machine_image_round_trip(store_backend, tmp_path, account, region, normal_vault, source_type):
    # rules P1, P2: ECS instance and VMware VM backups of a directory image read back byte for byte
    root = build_vm_image(tmp_path / "image", seed=7)
    expected = snapshot(root)
    vault = normal_vault()
    job = backup_ok(vault, make_source(account, region, source_type, path=root))
    assert job.point.source_type == source_type
    _, entries, _ = assert_point_matches(job.point, expected)
    assert entries["snapshots"]["type"] == "dir"
    assert len(entries["disk0.vmdk"]["chunks"]) >= 3
    assert_clean(vault)


@pytest.mark.parametrize(
    "store_backend,source_type,shape",
    [("local", t, shape) for t in (SourceType.TABLESTORE, SourceType.SAP_HANA) for shape in ("file", "directory")]
    + [("s3", SourceType.SAP_HANA, "file"), ("s3", SourceType.TABLESTORE, "directory")],
    indirect=["store_backend"],
)
def test_export_round_trip(store_backend, tmp_path, account, region, normal_vault, source_type, shape):
    # rules P1, P2: Tablestore and SAP HANA back up an export file, or a directory of export files,
    # byte for byte
    if shape == "file":
        export = write(tmp_path / "exports" / "full.export", random_bytes(1 * MiB, 11) + compressible_bytes(MiB, 12))
        path = export
    else:
        path = tmp_path / "exports"
        write(path / "index.xml", b"<export tables='2'/>\n", mode=0o644)
        write(path / "part-0001.bin", random_bytes(1536 * KiB, 13))
        write(path / "part-0002.bin", compressible_bytes(512 * KiB, 14))
        write(path / "schema" / "tables.sql", b"CREATE TABLE t (id INT);\n")
    expected = snapshot(path)
    vault = normal_vault()
    job = backup_ok(vault, make_source(account, region, source_type, path=path))
    manifest, entries, _ = assert_point_matches(job.point, expected)
    if shape == "file":
        assert list(entries) == ["full.export"] and job.point.files == 1
    assert manifest["source"] == str(path)
    assert_clean(vault)


# -- OSS ---------------------------------------------------------------------------------------------

OSS_OBJECTS = {
    # key: (bytes, content type given on S3, content type expected on the local default)
    "data/report.json": (compressible_bytes(64 * KiB, 21), "application/vnd.acme.report+json", "application/json"),
    "data/photos/cat.jpg": (random_bytes(300 * KiB, 22), "image/jpeg", "image/jpeg"),
    "data/big/archive": (random_bytes(2 * MiB, 23), "application/x-acme-archive", "application/octet-stream"),
    "data/empty.txt": (b"", "text/x-acme-empty", "text/plain"),
}
OUTSIDE_PREFIX = {"other/skip.txt": b"not under the prefix", "data-old/skip.txt": b"a prefix is not a word"}


def make_bucket(backend, region, name):
    """Fill an OSS bucket of the region: a directory in the embedded default, a bucket on S3."""
    if backend == "s3":
        conf = settings.OBJECT_STORE
        client = s3_client(conf["endpoint_url"], "testing", "testing")
        client.create_bucket(Bucket=name)
        for key, (data, content_type, _) in OSS_OBJECTS.items():
            client.put_object(Bucket=name, Key=key, Body=data, ContentType=content_type)
        for key, data in OUTSIDE_PREFIX.items():
            client.put_object(Bucket=name, Key=key, Body=data)
    else:
        root = Path(settings.OBJECT_STORE["root"]) / "oss" / region.code / name
        for key, (data, _, _) in OSS_OBJECTS.items():
            write(root / key, data)
        for key, data in OUTSIDE_PREFIX.items():
            write(root / key, data)


def test_oss_round_trip(store_backend, account, region, normal_vault):
    # rules P1, P2: an OSS source backs up the objects under its prefix with their bytes and content types
    bucket = "src-" + uuid.uuid4().hex[:12]
    make_bucket(store_backend, region, bucket)
    vault = normal_vault()
    source = make_source(account, region, SourceType.OSS, bucket=bucket, prefix="data/")

    job = backup_ok(vault, source)

    point = job.point
    assert point.source_location == f"oss://{bucket}/data/"
    _, entries, data = read_point(point)
    assert sorted(entries) == sorted(OSS_OBJECTS)
    for key, (body, s3_type, local_type) in OSS_OBJECTS.items():
        entry = entries[key]
        assert entry["type"] == "object"
        assert data[key] == body, key
        assert entry["size"] == len(body) and entry["hash"] == blake3.blake3(body).hexdigest()
        assert entry["content_type"] == (s3_type if store_backend == "s3" else local_type), key
    assert len(entries["data/big/archive"]["chunks"]) >= 3
    assert point.files == len(OSS_OBJECTS) and point.size == sum(len(b) for b, _, _ in OSS_OBJECTS.values())
    assert job.files_total == len(OSS_OBJECTS)
    assert_clean(vault)


def test_oss_bucket_that_does_not_exist_fails_the_job(store_backend, account, region, normal_vault):
    # rule P3: a bucket that does not exist fails the job with a clear message and leaves no point
    vault = normal_vault()
    bucket = "missing-" + uuid.uuid4().hex[:12]
    job = run_backup(vault, make_source(account, region, SourceType.OSS, bucket=bucket, prefix="x/"))
    assert job.status == BackupJob.Status.FAILED
    assert bucket in job.error and "does not exist" in job.error
    assert job.point is None and job.finished is not None
    assert not BackupPoint.objects.filter(vault=vault).exists()
    assert RawStore(region).keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]
