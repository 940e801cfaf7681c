"""What a restore does with files already in the target (rule S4: it reports what it wrote): fail,
skip or overwrite, and a file that is already identical is recognised, on directories and buckets."""

import os

import pytest

from restore.models import Existing, RestoreJob
from tests.restore.conftest import (
    KiB,
    bucket_objects,
    create_bucket,
    local_bucket_dir,
    make_target,
    part_files,
    random_bytes,
    restore,
    restore_ok,
    s3_raw_client,
    snapshot,
    write,
)
from vaults.models import SourceType

T0 = 1_700_000_500_000_000_001


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    write(root / "a-first.bin", random_bytes(200 * KiB, 1), mode=0o644, mtime_ns=T0 + 1)
    write(root / "m-clash.txt", b"the point's version\n" * 50, mode=0o640, mtime_ns=T0 + 2)
    write(root / "sub" / "same.bin", random_bytes(64 * KiB, 2), mode=0o600, mtime_ns=T0 + 3)
    write(root / "z-last.bin", random_bytes(150 * KiB, 3), mode=0o644, mtime_ns=T0 + 4)
    return root


@pytest.fixture
def setup(tmp_path, account, point_of, src):
    """A point, and a target that already holds a different m-clash.txt and an identical sub/same.bin."""
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    write(dest / "m-clash.txt", b"a different local file\n", mode=0o600, mtime_ns=T0 - 99)
    write(dest / "sub" / "same.bin", (src / "sub" / "same.bin").read_bytes(), mode=0o600, mtime_ns=T0 - 5)
    target = make_target(account, point_region, "ecs-instance", dest)
    return point, target, dest


def test_fail_names_the_existing_file_and_writes_nothing(setup, src):
    # rule S4: with "fail", a different existing file fails the job before anything is written
    point, target, dest = setup
    job = restore(point, target, existing=Existing.FAIL)
    assert job.status == RestoreJob.Status.FAILED
    assert "m-clash.txt" in job.error and "1 file(s)" in job.error
    assert "same.bin" not in job.error  # an identical file is no clash
    # nothing written: the files that did not exist are still absent, the existing one untouched
    assert not (dest / "a-first.bin").exists() and not (dest / "z-last.bin").exists()
    assert (dest / "m-clash.txt").read_bytes() == b"a different local file\n"
    assert (dest / "m-clash.txt").stat().st_mtime_ns == T0 - 99
    assert sorted(os.listdir(dest)) == ["m-clash.txt", "sub"] and os.listdir(dest / "sub") == ["same.bin"]
    assert job.bytes_written == 0 and job.files_done == 0 and job.report == {}


def test_skip_keeps_the_existing_file_and_counts_it(setup, src):
    # rule S4: with "skip", the existing file is kept and reported as skipped; the rest is restored
    point, target, dest = setup
    job = restore_ok(point, target, existing=Existing.SKIP)
    assert (dest / "m-clash.txt").read_bytes() == b"a different local file\n"
    assert (dest / "m-clash.txt").stat().st_mode & 0o777 == 0o600
    for name in ("a-first.bin", "z-last.bin", "sub/same.bin"):
        assert (dest / name).read_bytes() == (src / name).read_bytes(), name
    assert job.files_skipped == 2 and job.report["files_skipped"] == 2
    reasons = {s["path"]: s["reason"] for s in job.report["skipped"]}
    assert reasons == {"m-clash.txt": "exists", "sub/same.bin": "already identical"}
    assert job.report["files_written"] == 2 and job.files_verified == 2
    assert job.bytes_written == 350 * KiB
    assert job.files_done == 4 and job.bytes_done == job.bytes_total  # progress counts what was skipped
    assert part_files(dest) == []


def test_overwrite_replaces_the_existing_file(setup, src):
    # rule S4: with "overwrite", the existing file becomes the point's version, mode and mtime included
    point, target, dest = setup
    job = restore_ok(point, target, existing=Existing.OVERWRITE)
    got = snapshot(dest)
    want = snapshot(src)
    for path in ("a-first.bin", "m-clash.txt", "z-last.bin"):
        assert got[path]["data"] == want[path]["data"], path
        assert (got[path]["mode"], got[path]["mtime_ns"]) == (want[path]["mode"], want[path]["mtime_ns"]), path
    assert got["sub/same.bin"]["data"] == want["sub/same.bin"]["data"]
    # the identical file is recognised and not written again, even when overwriting
    assert {s["path"]: s["reason"] for s in job.report["skipped"]} == {"sub/same.bin": "already identical"}
    assert job.report["files_written"] == 3 and job.files_skipped == 1
    assert job.bytes_written == sum(len(want[p]["data"]) for p in ("a-first.bin", "m-clash.txt", "z-last.bin"))


def test_a_second_restore_of_an_identical_tree_writes_nothing(tmp_path, account, point_of, src):
    # rule S4: files already identical (by hash) are recognised, with the default "fail"
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "again"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)
    first = restore_ok(point, target)
    assert first.report["files_written"] == 4
    second = restore_ok(point, target)
    assert second.report["files_written"] == 0 and second.bytes_written == 0
    assert second.files_skipped == 4
    assert {s["reason"] for s in second.report["skipped"]} == {"already identical"}
    assert snapshot(dest) == snapshot(src)


def test_a_second_restore_over_restored_symlinks_succeeds(tmp_path, account, point_of, src):
    # rule S4: a symlink the first restore wrote, pointing where the point says, is no clash either
    os.symlink("a-first.bin", src / "link")
    os.symlink("/nowhere/at/all", src / "dangling")
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "again"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)
    restore_ok(point, target)
    second = restore(point, target)
    assert second.status == RestoreJob.Status.SUCCEEDED, second.error
    assert os.readlink(dest / "link") == "a-first.bin"


# -- buckets -----------------------------------------------------------------------------------------


@pytest.fixture
def oss_setup(store_backend, account, region, point_of):
    source = "src-" + os.urandom(5).hex()
    objects = {"d/one.txt": b"one\n" * 100, "d/two.bin": random_bytes(70 * KiB, 9)}
    if store_backend == "s3":
        client = s3_raw_client()
        client.create_bucket(Bucket=source)
        for key, data in objects.items():
            client.put_object(Bucket=source, Key=key, Body=data, ContentType="application/x-test")
    else:
        for key, data in objects.items():
            write(local_bucket_dir(region, source) / key, data)
    point, point_region = point_of("general", SourceType.OSS, bucket=source, prefix="d/")
    dest = create_bucket(store_backend, point_region)
    if store_backend == "s3":
        s3_raw_client().put_object(Bucket=dest, Key="r/d/one.txt", Body=b"already here")
    else:
        write(local_bucket_dir(point_region, dest) / "r" / "d" / "one.txt", b"already here")
    target = make_target(account, point_region, "oss-bucket", dest, prefix="r")
    return store_backend, point, point_region, target, dest, objects


def test_bucket_fail_names_the_existing_object(oss_setup):
    backend, point, point_region, target, dest, objects = oss_setup
    job = restore(point, target, existing=Existing.FAIL)
    assert job.status == RestoreJob.Status.FAILED and "d/one.txt" in job.error
    assert sorted(bucket_objects(backend, point_region, dest)) == ["r/d/one.txt"]
    assert bucket_objects(backend, point_region, dest)["r/d/one.txt"][0] == b"already here"


def test_bucket_skip_and_overwrite(oss_setup):
    backend, point, point_region, target, dest, objects = oss_setup
    job = restore_ok(point, target, existing=Existing.SKIP)
    got = bucket_objects(backend, point_region, dest)
    assert got["r/d/one.txt"][0] == b"already here" and got["r/d/two.bin"][0] == objects["d/two.bin"]
    assert job.files_skipped == 1 and job.report["files_written"] == 1
    job = restore_ok(point, target, existing=Existing.OVERWRITE)
    got = bucket_objects(backend, point_region, dest)
    assert {k: v[0] for k, v in got.items()} == {"r/" + k: v for k, v in objects.items()}
    if backend == "s3":
        assert {v[1] for v in got.values()} == {"application/x-test"}
    assert job.report["files_written"] == 2


def test_bucket_fail_treats_objects_already_identical_as_restored(oss_setup):
    # a restore run again (its worker stopped and it resumed, or started anew) is not refused by its own objects
    backend, point, point_region, target, dest, objects = oss_setup
    restore_ok(point, target, existing=Existing.OVERWRITE)
    again = restore_ok(point, target, existing=Existing.FAIL)
    assert again.report["files_written"] == 0 and again.files_skipped == 2 and again.bytes_written == 0
    assert {s["reason"] for s in again.report["skipped"]} == {"already identical"}
    assert {k: v[0] for k, v in bucket_objects(backend, point_region, dest).items()} == {
        "r/" + k: v for k, v in objects.items()
    }
