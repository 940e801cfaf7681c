"""Restore round trips for every data source type (rules S1, S2, S4), from a General Backup vault and
from a Replication Target vault after a real replication (its restore target is in its own region).

What a restore wrote is read back with os calls and a plain boto3 client and compared with the source
as it was backed up: bytes, modes, nanosecond mtimes, symlinks, empty files and empty directories.
"""

import os

import blake3
import pytest

from console.models import AuditLog
from restore.models import Existing, RestoreJob
from tests.restore.conftest import (
    KiB,
    MiB,
    assert_tree_equal,
    bucket_objects,
    build_tree,
    compressible_bytes,
    create_bucket,
    local_bucket_dir,
    make_target,
    part_files,
    random_bytes,
    restore_ok,
    s3_raw_client,
    snapshot,
    tree_of,
    write,
)
from vaults.models import SourceType

VAULT_KINDS = ["general", "replica"]

# rule S2: the kind of target each file-tree source restores to
TREE_CASES = [
    (SourceType.ECS_FILE, "ecs-instance"),
    (SourceType.NAS, "nas"),
    (SourceType.CPFS, "cpfs"),
    (SourceType.ON_PREMISES_NAS, "on-premises-nas"),
    (SourceType.ON_PREMISES_FILE, "local-server"),
]
STREAM_CASES = [(SourceType.TABLESTORE, "tablestore"), (SourceType.SAP_HANA, "sap-hana")]


def assert_progress_and_report(job, expected_files, expected_bytes):
    # rule S4: progress reaches the whole point, and the report says what was written and verified
    assert job.files_total == expected_files and job.bytes_total == expected_bytes
    assert job.files_done == expected_files and job.bytes_done == expected_bytes
    assert job.percent == 100 and job.started and job.finished and job.error == ""
    assert job.files_verified == expected_files and job.files_skipped == 0
    assert job.bytes_written == expected_bytes
    assert job.report["files_written"] == expected_files
    assert job.report["bytes_written"] == expected_bytes
    assert job.report["verified"] == expected_files
    run = AuditLog.objects.get(action="run_restore", object_id=str(job.pk))
    assert run.outcome == AuditLog.Outcome.SUCCESS
    assert run.detail["files"] == expected_files and run.detail["bytes"] == expected_bytes


@pytest.mark.parametrize("vault_kind", VAULT_KINDS)
@pytest.mark.parametrize("source_type,kind", TREE_CASES)
def test_file_tree_round_trip(vault_kind, source_type, kind, tmp_path, account, point_of):
    # rules S1, S2, S4: a file tree comes back with its directories, modes, mtimes, symlinks,
    # empty files and empty directories, in a target of the point's own region
    src = build_tree(tmp_path / "src", seed=3, big_size=600 * KiB)
    expected = snapshot(src)
    point, point_region = point_of(vault_kind, source_type, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, kind, dest)

    job = restore_ok(point, target)

    assert job.target.region == point.vault.region == point_region
    restored = tree_of(dest)
    assert_tree_equal(restored, expected)
    # the special entries, explicitly
    assert restored["empty.txt"]["type"] == "file" and restored["empty.txt"]["data"] == b""
    assert restored["empty-dir"]["type"] == "dir" and restored["empty-dir"]["mode"] == 0o750
    assert restored["link-dangling"] == {**expected["link-dangling"], "mode": restored["link-dangling"]["mode"]}
    assert os.readlink(dest / "a" / "link-dir") == "b"
    assert (dest / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert part_files(dest) == []
    files = {p: w for p, w in expected.items() if w["type"] == "file"}
    assert_progress_and_report(job, len(files), sum(len(w["data"]) for w in files.values()))
    assert job.is_free is (vault_kind == "replica" and not job.target.sends_over_internet)  # rule B2


@pytest.mark.parametrize("vault_kind", VAULT_KINDS)
@pytest.mark.parametrize("source_type,kind", STREAM_CASES)
def test_stream_round_trip(vault_kind, source_type, kind, tmp_path, account, point_of):
    # rules S2, S4: a Tablestore / SAP HANA export comes back byte for byte
    data = random_bytes(1 * MiB + 12345, 41) + compressible_bytes(700 * KiB, 42)
    export = write(tmp_path / "exports" / "full.export", data, mode=0o640, mtime_ns=1_690_000_000_987_654_321)
    point, point_region = point_of(vault_kind, source_type, path=export)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, kind, dest)

    job = restore_ok(point, target)

    assert sorted(os.listdir(dest)) == ["full.export"]
    restored = dest / "full.export"
    assert restored.read_bytes() == data
    assert blake3.blake3(restored.read_bytes()).hexdigest() == blake3.blake3(data).hexdigest()
    st = restored.stat()
    assert st.st_mode & 0o777 == 0o640 and st.st_mtime_ns == 1_690_000_000_987_654_321
    assert_progress_and_report(job, 1, len(data))


def test_stream_directory_export_round_trip(tmp_path, account, point_of):
    # rule S2: an export that is a directory of files restores as that directory
    root = tmp_path / "exports"
    write(root / "index.xml", b"<export tables='2'/>\n", mode=0o644, mtime_ns=1_690_000_000_000_000_001)
    write(root / "part-0001.bin", random_bytes(900 * KiB, 43), mode=0o600, mtime_ns=1_690_000_000_000_000_002)
    write(root / "schema" / "tables.sql", b"CREATE TABLE t (id INT);\n", mode=0o644, mtime_ns=1_690_000_000_000_000_3)
    os.utime(root / "schema", ns=(1_690_000_000_000_000_004,) * 2)
    expected = snapshot(root)
    point, point_region = point_of("replica", SourceType.SAP_HANA, path=root)
    dest = tmp_path / "dest"
    dest.mkdir()
    restore_ok(point, make_target(account, point_region, "sap-hana", dest))
    assert_tree_equal(tree_of(dest), expected)


# -- OSS ---------------------------------------------------------------------------------------------

OSS_OBJECTS = {
    # key: (bytes, content type set on S3)
    "data/report.json": (compressible_bytes(64 * KiB, 51), "application/vnd.acme.report+json"),
    "data/photos/cat.jpg": (random_bytes(300 * KiB, 52), "image/jpeg"),
    "data/big/archive": (random_bytes(2 * MiB + 7, 53), "application/x-acme-archive"),
    "data/empty.txt": (b"", "text/x-acme-empty"),
}
# what a local (embedded) bucket yields: the backup guesses the content type from the key
LOCAL_TYPES = {
    "data/report.json": "application/json",
    "data/photos/cat.jpg": "image/jpeg",
    "data/big/archive": "application/octet-stream",
    "data/empty.txt": "text/plain",
}


def fill_source_bucket(backend, region, name):
    if backend == "s3":
        client = s3_raw_client()
        client.create_bucket(Bucket=name)
        for key, (data, content_type) in OSS_OBJECTS.items():
            client.put_object(Bucket=name, Key=key, Body=data, ContentType=content_type)
        client.put_object(Bucket=name, Key="other/outside.txt", Body=b"not under the prefix")
    else:
        root = local_bucket_dir(region, name)
        for key, (data, _) in OSS_OBJECTS.items():
            write(root / key, data)
        write(root / "other" / "outside.txt", b"not under the prefix")


@pytest.mark.parametrize("existing", [Existing.FAIL, Existing.OVERWRITE])
@pytest.mark.parametrize("vault_kind", VAULT_KINDS)
def test_oss_round_trip(store_backend, vault_kind, existing, account, region, point_of):
    # rules S1, S2, S4: OSS objects go back into an (empty) bucket of the point's region, under the
    # target's prefix, with their bytes and content types; with the default "fail" (which first checks
    # every key is free) and with "overwrite" (which does not)
    source_bucket = "src-" + os.urandom(6).hex()
    fill_source_bucket(store_backend, region, source_bucket)
    point, point_region = point_of(vault_kind, SourceType.OSS, bucket=source_bucket, prefix="data/")
    dest_bucket = create_bucket(store_backend, point_region)
    target = make_target(account, point_region, "oss-bucket", dest_bucket, prefix="restored/2024/")

    job = restore_ok(point, target, existing=existing)

    got = bucket_objects(store_backend, point_region, dest_bucket)
    assert sorted(got) == sorted("restored/2024/" + key for key in OSS_OBJECTS)
    for key, (data, s3_type) in OSS_OBJECTS.items():
        body, content_type = got["restored/2024/" + key]
        assert body == data, key
        if store_backend == "s3":
            head = s3_raw_client().head_object(Bucket=dest_bucket, Key="restored/2024/" + key)
            assert head["ContentType"] == s3_type == content_type, key
            assert head["ContentLength"] == len(data)
    if store_backend == "local":
        # nothing half-written is left beside the objects
        root = local_bucket_dir(point_region, dest_bucket)
        assert [p.name for p in root.rglob("*") if p.name.endswith(".part")] == []
    assert_progress_and_report(job, len(OSS_OBJECTS), sum(len(d) for d, _ in OSS_OBJECTS.values()))


# -- VMware VM ---------------------------------------------------------------------------------------


def test_vmware_vm_from_general_vault_to_local_server(tmp_path, account, point_of):
    # rule S2 (and S3 does not apply to a General Backup vault): a VMware VM point restores to a local
    # server's restore folder
    image = tmp_path / "vm"
    disk = b"".join(random_bytes(256 * KiB, 60 + i) if i % 2 == 0 else bytes(256 * KiB) for i in range(6))
    write(image / "disk0.vmdk", disk, mode=0o600, mtime_ns=1_650_000_000_000_000_001)
    write(image / "vm.vmx", b'displayName = "web-01"\n', mode=0o644, mtime_ns=1_650_000_000_000_000_002)
    (image / "snapshots").mkdir()
    os.utime(image / "snapshots", ns=(1_650_000_000_000_000_003,) * 2)
    expected = snapshot(image)
    point, point_region = point_of("general", SourceType.VMWARE_VM, path=image)
    dest = tmp_path / "dest"
    dest.mkdir()

    job = restore_ok(point, make_target(account, point_region, "local-server", dest))

    assert_tree_equal(tree_of(dest), expected)
    assert job.is_free is False
    assert_progress_and_report(job, 2, len(disk) + len(b'displayName = "web-01"\n'))


def test_restore_job_row_names_the_point_and_target(tmp_path, account, point_of):
    # rule S4: the job row keeps what was restored where, even if the point goes later
    src = tmp_path / "src"
    write(src / "one.txt", b"one\n")
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)
    job = restore_ok(point, target)
    assert job.point_label == point.id and job.vault_id == point.vault_id and job.target_id == target.pk
    assert job.account_id == account.pk
    assert RestoreJob.objects.filter(point=point).count() == 1
