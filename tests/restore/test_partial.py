"""Restoring part of a point (rule S4: exactly the chosen data): a sub-tree, or a list of files."""

import pytest
from django.core.exceptions import ValidationError

from restore.models import RestoreJob
from tests.restore.conftest import (
    KiB,
    assert_tree_equal,
    build_tree,
    make_target,
    part_files,
    restore,
    restore_ok,
    snapshot,
    tree_of,
)
from vaults.models import SourceType


@pytest.fixture
def tree_point(tmp_path, account, point_of):
    src = build_tree(tmp_path / "src", seed=5, big_size=400 * KiB)
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    return src, snapshot(src), point, point_region


def fresh_target(tmp_path, account, region, name):
    dest = tmp_path / name
    dest.mkdir()
    return dest, make_target(account, region, "ecs-instance", dest)


def test_sub_path_restores_only_that_sub_tree(tmp_path, account, tree_point):
    # rule S4: a sub-path restores that directory and everything under it, and nothing else
    src, expected, point, point_region = tree_point
    dest, target = fresh_target(tmp_path, account, point_region, "dest")

    job = restore_ok(point, target, sub_path="/a/b/")

    assert job.sub_path == "a/b"
    want = {p: w for p, w in expected.items() if p == "a/b" or p.startswith("a/b/")}
    got = tree_of(dest)
    # the parent "a" is created to hold it, but is not part of what was chosen
    assert sorted(got) == sorted(["a", *want])
    assert_tree_equal({p: g for p, g in got.items() if p != "a"}, want)
    assert not (dest / "a" / "small.json").exists() and not (dest / "big.bin").exists()
    assert job.files_total == 1 and job.report["files_written"] == 1
    assert job.bytes_written == len(expected["a/b/c/deep.dat"]["data"])
    assert part_files(dest) == []


def test_file_list_restores_only_those_files(tmp_path, account, tree_point):
    # rule S4: a list of paths restores exactly those entries
    src, expected, point, point_region = tree_point
    dest, target = fresh_target(tmp_path, account, point_region, "dest")

    job = restore_ok(point, target, files=["notes.txt", "a/small.json", "link-rel"])

    got = tree_of(dest)
    assert sorted(got) == ["a", "a/small.json", "link-rel", "notes.txt"]
    assert_tree_equal(
        {p: got[p] for p in ("a/small.json", "link-rel", "notes.txt")},
        {p: expected[p] for p in ("a/small.json", "link-rel", "notes.txt")},
    )
    assert job.files_total == 2 and job.files_verified == 2
    assert job.bytes_written == len(expected["notes.txt"]["data"]) + len(expected["a/small.json"]["data"])


def test_sub_path_that_matches_nothing_fails_the_job_clearly(tmp_path, account, tree_point):
    src, expected, point, point_region = tree_point
    dest, target = fresh_target(tmp_path, account, point_region, "dest")
    job = restore(point, target, sub_path="no/such/dir")
    assert job.status == RestoreJob.Status.FAILED
    assert "no/such/dir" in job.error
    assert list(dest.iterdir()) == []


def test_sub_path_outside_the_point_is_refused(tmp_path, account, tree_point):
    src, expected, point, point_region = tree_point
    dest, target = fresh_target(tmp_path, account, point_region, "dest")
    for bad in ("../etc", "a/../../x"):
        with pytest.raises(ValidationError):
            restore(point, target, sub_path=bad)
    with pytest.raises(ValidationError):
        restore(point, target, files=["../../etc/passwd"])
    assert not RestoreJob.objects.exists()
