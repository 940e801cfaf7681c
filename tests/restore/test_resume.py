"""A restore interrupted in the middle (its process gone, no exception handler run) is finished by running
the same job again (rules S4 and P3's spirit: no file under its final name is ever incomplete).

The interruption is made in-process: a BaseException raised from the data stream of one file, which
run_restore_job does not catch, so the job row stays "running" as after a SIGKILL. The real-worker
SIGKILL version is tests/faults/test_restore_killed.py.
"""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from console import jobs
from console.jobs import QUEUED_STALE
from console.models import AuditLog
from restore import services
from restore.models import RestoreJob
from tests.restore.conftest import (
    KiB,
    assert_tree_equal,
    make_target,
    part_files,
    random_bytes,
    snapshot,
    write,
)
from vaults.dataplane.readback import PointReader
from vaults.models import SourceType


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler of the job runs."""


def interrupt_in(monkeypatch, path, after_chunks=1):
    """Make reading `path` die after some of its chunks were handed out."""
    original = PointReader.iter_file

    def iter_file(self, entry):
        for n, data in enumerate(original(self, entry)):
            if entry["path"] == path and n == after_chunks:
                raise Crash()
            yield data

    monkeypatch.setattr(PointReader, "iter_file", iter_file)


def make_stale(job_id):
    RestoreJob.objects.filter(pk=job_id).update(heartbeat=timezone.now() - timedelta(minutes=10))


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    for i in range(6):
        write(root / f"f{i}.bin", random_bytes(400 * KiB, 90 + i), mode=0o640, mtime_ns=1_700_000_900_000_000_000 + i)
    write(root / "sub" / "deep.bin", random_bytes(200 * KiB, 99), mode=0o600)
    return root


def run_interrupted(monkeypatch, point, target, path):
    job = services.start_restore(actor=None, point=point, target=target)
    interrupt_in(monkeypatch, path)
    with pytest.raises(Crash):
        services.run_restore_job(job.pk)
    monkeypatch.undo()
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.RUNNING
    return job


def test_an_interrupted_job_run_again_finishes(monkeypatch, tmp_path, account, point_of, src):
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)
    job = run_interrupted(monkeypatch, point, target, "f3.bin")

    # no file under its final name is incomplete; the one being written is only a temporary file
    assert not (dest / "f3.bin").exists()
    for name in os.listdir(dest):
        if not name.endswith(".part"):
            assert (dest / name).read_bytes() == (src / name).read_bytes(), name
    assert sorted(n for n in os.listdir(dest) if not n.endswith(".part")) == ["f0.bin", "f1.bin", "f2.bin"]

    # a live heartbeat keeps a second runner off; a stale one lets the job be finished
    assert services.run_restore_job(job.pk) is None
    make_stale(job.pk)
    finished = services.run_restore_job(job.pk)
    assert finished is not None and finished.status == RestoreJob.Status.SUCCEEDED, finished and finished.error
    assert_tree_equal(snapshot(dest), snapshot(src))
    assert part_files(dest) == []
    # the three files restored before were recognised by their hash, not written again
    assert finished.files_skipped == 3 and finished.report["files_written"] == 4
    assert {s["reason"] for s in finished.report["skipped"]} == {"already identical"}


def test_an_interrupted_job_with_symlinks_run_again_finishes(monkeypatch, tmp_path, account, point_of, src):
    # the symlinks restored before the interruption are no clash for the same job's second run
    os.symlink("f0.bin", src / "a-link")
    os.symlink("/nowhere", src / "a-dangling")
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    job = run_interrupted(monkeypatch, point, make_target(account, point_region, "ecs-instance", dest), "f2.bin")
    assert os.readlink(dest / "a-link") == "f0.bin"
    make_stale(job.pk)
    services.run_restore_job(job.pk)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert_tree_equal(snapshot(dest), snapshot(src))


def test_a_reaped_job_reports_the_worker_stopped(monkeypatch, tmp_path, account, point_of, src):
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    job = run_interrupted(monkeypatch, point, make_target(account, point_region, "ecs-instance", dest), "f1.bin")
    assert jobs.reap(services.RESTORE) == []  # the heartbeat is fresh
    make_stale(job.pk)
    assert jobs.reap(services.RESTORE) == [job.pk]
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.FAILED and "Start it again" in job.error
    assert (dest / "f0.bin").read_bytes() == (src / "f0.bin").read_bytes()
    # rule A3: the state change is audited, as the backup jobs' reaper does
    row = AuditLog.objects.filter(action="run_restore", object_id=str(job.pk)).first()
    assert row is not None and row.outcome == AuditLog.Outcome.FAILED


def test_a_job_whose_message_was_lost_is_queued_again(monkeypatch, tmp_path, account, point_of, src):
    # a broker restarted without persistence loses queued messages; the periodic reaper sends them again
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "ecs-instance", dest)
    job = services.start_restore(actor=None, point=point, target=target)
    sent = []
    monkeypatch.setattr(jobs, "enqueue", lambda kind, pk: sent.append(pk))  # records what reaches the broker
    assert jobs.requeue(services.RESTORE) == []  # queued a moment ago: it may just be waiting
    RestoreJob.objects.filter(pk=job.pk).update(created=timezone.now() - QUEUED_STALE - timedelta(seconds=1))
    assert jobs.requeue(services.RESTORE) == [job.pk] and sent == [job.pk]
    assert jobs.requeue(services.RESTORE) == []  # once per period
    services.run_restore_job(job.pk)  # the worker that gets the message
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert_tree_equal(snapshot(dest), snapshot(src))
    RestoreJob.objects.filter(pk=job.pk).update(heartbeat=None)
    assert jobs.requeue(services.RESTORE) == []  # only queued jobs
