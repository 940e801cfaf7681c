"""Restores that cannot finish (rule S4: verified by hash, never a file that looks complete but is not):
damaged backup data, a target directory that is missing or cannot be written, a missing bucket."""

import os

import pytest
from django.core.exceptions import ValidationError

from console.models import AuditLog
from restore.models import Existing, OnDamage, RestoreJob
from restore.services import start_restore
from tests.restore.conftest import (
    KiB,
    RawStore,
    bucket_objects,
    create_bucket,
    local_bucket_dir,
    make_target,
    part_files,
    random_bytes,
    restore,
    s3_raw_client,
    write,
)
from vaults.dataplane.readback import PointReader
from vaults.models import Chunk, SourceType

FILES = {
    "a-before.bin": random_bytes(300 * KiB, 71),
    "b-victim.bin": random_bytes(900 * KiB, 72),
    "c-after.bin": random_bytes(200 * KiB, 73),
}


def corrupt_chunk_of(point, path, index=1):
    """Flip one byte inside the stored (sealed) bytes of the index-th chunk of a file, in its pack object."""
    entry = next(e for e in PointReader(point).manifest()["entries"] if e["path"] == path)
    assert len(entry["chunks"]) > index
    chunk_hex = entry["chunks"][index][0]
    row = Chunk.objects.select_related("pack").get(vault=point.vault, chunk_id=bytes.fromhex(chunk_hex))
    RawStore(point.vault.region).flip(row.pack.key, row.offset + row.length // 2)


def damaged_bucket_point(store_backend, region, point_of):
    """A point of an OSS source holding FILES, b-victim.bin's data damaged, and an empty bucket to restore to."""
    source = "src-" + os.urandom(5).hex()
    if store_backend == "s3":
        client = s3_raw_client()
        client.create_bucket(Bucket=source)
        for name, data in FILES.items():
            client.put_object(Bucket=source, Key=name, Body=data)
    else:
        for name, data in FILES.items():
            write(local_bucket_dir(region, source) / name, data)
    point, point_region = point_of("general", SourceType.OSS, bucket=source)
    corrupt_chunk_of(point, "b-victim.bin")
    return point, point_region, create_bucket(store_backend, point_region)


def assert_failed_run_audited(job):
    row = AuditLog.objects.get(action="run_restore", object_id=str(job.pk))
    assert row.outcome == AuditLog.Outcome.FAILED and row.detail["reason"] == job.error


@pytest.mark.parametrize("vault_kind", ["general", "replica"])
def test_corrupted_chunk_fails_naming_the_file_and_leaves_nothing_under_its_name(
    store_backend, vault_kind, tmp_path, account, point_of
):
    # rule S4: data is verified before it gets its name; the damaged file is named and absent
    src = tmp_path / "src"
    for name, data in FILES.items():
        write(src / name, data)
    point, point_region = point_of(vault_kind, SourceType.ECS_FILE, path=src)
    corrupt_chunk_of(point, "b-victim.bin")
    dest = tmp_path / "dest"
    dest.mkdir()

    job = restore(point, make_target(account, point_region, "ecs-instance", dest))

    assert job.status == RestoreJob.Status.FAILED
    assert "b-victim.bin" in job.error and "damaged" in job.error
    assert not os.path.lexists(dest / "b-victim.bin")
    assert part_files(dest) == []  # the temporary file of the damaged one is removed too
    # what was restored before the damaged file is there and correct; nothing else is
    for name in os.listdir(dest):
        assert name in FILES and (dest / name).read_bytes() == FILES[name], name
    assert (dest / "a-before.bin").read_bytes() == FILES["a-before.bin"]
    assert job.finished is not None and job.report == {}
    assert_failed_run_audited(job)


def test_corrupted_chunk_to_a_bucket_leaves_no_object_under_its_key(store_backend, tmp_path, account, region, point_of):
    # rule S4: the same for OSS; "overwrite" so the run reaches the data (the clash check is tested elsewhere)
    point, point_region, dest = damaged_bucket_point(store_backend, region, point_of)

    job = restore(
        point, make_target(account, point_region, "oss-bucket", dest, prefix="x"), existing=Existing.OVERWRITE
    )

    assert job.status == RestoreJob.Status.FAILED and "b-victim.bin" in job.error
    got = bucket_objects(store_backend, point_region, dest)
    assert "x/b-victim.bin" not in got
    assert set(got) <= {"x/a-before.bin"} and all(got[k][0] == FILES[k[2:]] for k in got)
    if store_backend == "local":
        assert [p.name for p in local_bucket_dir(point_region, dest).rglob("*") if p.is_file()] == [
            p.split("/")[-1] for p in got
        ]


@pytest.mark.parametrize("vault_kind", ["general", "replica"])
def test_restore_what_is_intact_leaves_out_the_damaged_file_and_lists_it(
    store_backend, vault_kind, tmp_path, account, point_of
):
    # rule S4 with OnDamage.INTACT: every intact file is restored and verified; the damaged one is not
    # written under its name, is listed in the report and audited; "fail" stays the default (test above)
    src = tmp_path / "src"
    for name, data in FILES.items():
        write(src / name, data)
    point, point_region = point_of(vault_kind, SourceType.ECS_FILE, path=src)
    corrupt_chunk_of(point, "b-victim.bin")
    dest = tmp_path / "dest"
    dest.mkdir()

    job = restore(point, make_target(account, point_region, "ecs-instance", dest), on_damage=OnDamage.INTACT)

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert sorted(os.listdir(dest)) == ["a-before.bin", "c-after.bin"]
    assert all((dest / name).read_bytes() == FILES[name] for name in os.listdir(dest))
    assert part_files(dest) == []
    assert job.report["files_damaged"] == 1 and job.report["files_written"] == 2 and job.report["verified"] == 2
    [damaged] = job.report["damaged"]
    assert damaged["path"] == "b-victim.bin" and "damaged" in damaged["reason"]
    assert (job.files_done, job.bytes_done) == (3, job.bytes_total)  # the damaged file is dealt with: left out
    row = AuditLog.objects.get(action="run_restore", object_id=str(job.pk))
    assert row.outcome == AuditLog.Outcome.SUCCESS and row.detail["damaged"] == 1


def test_a_pack_cut_short_is_damage_to_the_files_in_its_lost_part(store_backend, tmp_path, account, point_of):
    # a pack object truncated in the store (or gone): the chunks past its end are damaged data, not an outage;
    # "restore what is intact" restores the files before the cut and names the others
    src = tmp_path / "src"
    for name, data in FILES.items():
        write(src / name, data)
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    victim = next(e for e in PointReader(point).manifest()["entries"] if e["path"] == "b-victim.bin")
    first = Chunk.objects.select_related("pack").get(vault=point.vault, chunk_id=bytes.fromhex(victim["chunks"][0][0]))
    store = RawStore(point.vault.region)
    store.write(first.pack.key, store.read(first.pack.key)[: first.offset])  # cut where b-victim.bin begins
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)

    failed = restore(point, target)
    assert failed.status == RestoreJob.Status.FAILED and "b-victim.bin" in failed.error and "damaged" in failed.error

    job = restore(point, target, on_damage=OnDamage.INTACT)
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert (dest / "a-before.bin").read_bytes() == FILES["a-before.bin"]
    damaged = {d["path"] for d in job.report["damaged"]}
    assert "b-victim.bin" in damaged and not (dest / "b-victim.bin").exists()
    assert set(os.listdir(dest)) == set(FILES) - damaged


def test_restore_what_is_intact_to_a_bucket(store_backend, tmp_path, account, region, point_of):
    point, point_region, dest = damaged_bucket_point(store_backend, region, point_of)

    job = restore(point, make_target(account, point_region, "oss-bucket", dest, prefix="x"), on_damage=OnDamage.INTACT)

    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    got = bucket_objects(store_backend, point_region, dest)
    assert sorted(got) == ["x/a-before.bin", "x/c-after.bin"] and all(got[k][0] == FILES[k[2:]] for k in got)
    assert [d["path"] for d in job.report["damaged"]] == ["b-victim.bin"]


def test_an_unknown_choice_for_damaged_data_is_refused(account, small_point, tmp_path):
    point, point_region = small_point
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "local-server", dest)
    with pytest.raises(ValidationError, match="Unknown choice"):
        start_restore(actor=None, point=point, target=target, on_damage="x")
    assert not RestoreJob.objects.exists()


@pytest.fixture
def small_point(tmp_path, account, point_of):
    src = tmp_path / "src"
    write(src / "a" / "small.json", b'{"k": 1}\n')
    write(src / "top.bin", random_bytes(50 * KiB, 74))
    return point_of("general", SourceType.ON_PREMISES_FILE, path=src)


def test_target_directory_that_does_not_exist(tmp_path, account, small_point):
    point, point_region = small_point
    missing = tmp_path / "no" / "such" / "dir"
    job = restore(point, make_target(account, point_region, "local-server", missing))
    assert job.status == RestoreJob.Status.FAILED
    assert str(missing) in job.error and "does not exist" in job.error
    assert not (tmp_path / "no").exists()  # not created behind the user's back
    assert_failed_run_audited(job)


def test_target_directory_under_a_regular_file(tmp_path, account, small_point):
    # the tests run as root, so "not writable" is made by a path that cannot be a directory
    point, point_region = small_point
    blocker = write(tmp_path / "blocker", b"i am a file")
    job = restore(point, make_target(account, point_region, "local-server", blocker / "restore"))
    assert job.status == RestoreJob.Status.FAILED and str(blocker / "restore") in job.error
    assert blocker.read_bytes() == b"i am a file"
    job = restore(point, make_target(account, point_region, "local-server", blocker, name="the-file-itself"))
    assert job.status == RestoreJob.Status.FAILED and str(blocker) in job.error


def test_directory_of_the_point_blocked_by_a_file_in_the_target(tmp_path, account, small_point):
    # a path of the point cannot be created: the job fails naming it, the blocking file is untouched
    point, point_region = small_point
    dest = tmp_path / "dest"
    write(dest / "a", b"a file where the point has a directory")
    job = restore(point, make_target(account, point_region, "local-server", dest), existing=Existing.OVERWRITE)
    assert job.status == RestoreJob.Status.FAILED
    assert job.error.startswith("a") and "the target has a file" in job.error and "move it away" in job.error
    assert (dest / "a").read_bytes() == b"a file where the point has a directory"
    assert part_files(dest) == []


def test_file_of_the_point_blocked_by_a_directory_in_the_target(tmp_path, account, small_point):
    point, point_region = small_point
    dest = tmp_path / "dest"
    write(dest / "top.bin" / "keep", b"mine")
    job = restore(point, make_target(account, point_region, "local-server", dest), existing=Existing.OVERWRITE)
    assert job.status == RestoreJob.Status.FAILED
    assert job.error == "top.bin: the target has a directory there, where the point has a file; move it away."
    assert (dest / "top.bin" / "keep").read_bytes() == b"mine" and part_files(dest) == []


@pytest.mark.parametrize("existing", [Existing.FAIL, Existing.OVERWRITE])
def test_bucket_that_does_not_exist(store_backend, existing, account, region, point_of, tmp_path):
    source = "src-" + os.urandom(5).hex()
    if store_backend == "s3":
        from tests.restore.conftest import s3_raw_client

        s3_raw_client().create_bucket(Bucket=source)
        s3_raw_client().put_object(Bucket=source, Key="k.txt", Body=b"kay")
    else:
        write(local_bucket_dir(region, source) / "k.txt", b"kay")
    point, point_region = point_of("general", SourceType.OSS, bucket=source)
    missing = "missing-" + os.urandom(5).hex()
    job = restore(point, make_target(account, point_region, "oss-bucket", missing), existing=existing)
    assert job.status == RestoreJob.Status.FAILED
    assert missing in job.error and "does not exist" in job.error
    if store_backend == "local":
        assert not local_bucket_dir(point_region, missing).exists()  # not created by the restore
    else:
        names = [b["Name"] for b in s3_raw_client().list_buckets()["Buckets"]]
        assert missing not in names
    assert_failed_run_audited(job)


@pytest.mark.parametrize("existing", [Existing.FAIL, Existing.OVERWRITE])
def test_a_symlink_in_the_target_does_not_lead_the_restore_outside_it(existing, tmp_path, account, small_point):
    # rule S4: a restore writes the point's data into the target, and nowhere else: a directory of the
    # point that exists in the target as a symlink to elsewhere is not followed
    point, point_region = small_point
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o700)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "a")
    job = restore(point, make_target(account, point_region, "local-server", dest), existing=existing)
    assert list(outside.iterdir()) == [], f"the restore wrote outside its target ({job.status}: {job.error})"
    assert outside.stat().st_mode & 0o777 == 0o700


def test_an_object_that_cannot_be_put_leaves_nothing_listed_in_a_local_bucket(tmp_path, region):
    # the copy in progress lives beside the bucket, so a failed or crashed put never shows as an object
    from vaults.dataplane.objectstore import ObjectStoreError, oss_bucket

    name = "b-" + os.urandom(5).hex()
    write(local_bucket_dir(region, name) / "taken" / "x", b"x")  # a key that is a directory cannot be replaced
    write(tmp_path / "f", random_bytes(100 * KiB, 74))
    bucket = oss_bucket(region, name)
    with pytest.raises(ObjectStoreError, match="Cannot write taken"):
        bucket.put_file("taken", tmp_path / "f")
    assert [o["key"] for o in bucket.list_objects()] == ["taken/x"]
    assert not list(local_bucket_dir(region, name).parent.rglob("*.part"))
    bucket.put_file("y/z", tmp_path / "f")
    assert (local_bucket_dir(region, name) / "y" / "z").read_bytes() == random_bytes(100 * KiB, 74)
