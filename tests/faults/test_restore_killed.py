"""A restore killed mid-way on a real worker (SIGKILL of the worker and its pool), then finished.

Rule S4 (a restore writes exactly the point's data, verified by hash): at no moment is a file under its
final name incomplete, whatever kills the worker; the job run again finishes and every file is
byte-identical.
"""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from restore import services
from restore.models import RestoreJob
from tests.conftest import wait_until
from vaults import services as vault_services
from vaults.models import BackupJob, BackupPoint

MiB = 1 << 20
FILES = 30
SIZE = 5 * MiB  # 150 MiB of random (incompressible) data


def final_names(dest):
    return sorted(n for n in os.listdir(dest) if not n.endswith(".part"))


@pytest.mark.worker
def test_killed_restore_leaves_no_incomplete_file_and_finishes_when_run_again(
    celery_worker_process, monkeypatch, make_vault, account, region, tmp_path
):
    # only the restore goes to the worker: the vault and the backup are done here
    monkeypatch.setattr("vaults.services.backups._enqueue_backup", lambda job_id: None)
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)
    vault = vault_services.initialize_vault_storage(make_vault("big").id)
    src = tmp_path / "src"
    src.mkdir()
    expected = {}
    for i in range(FILES):
        data = os.urandom(SIZE)
        (src / f"f{i:03d}.bin").write_bytes(data)
        expected[f"f{i:03d}.bin"] = data
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="big", path=str(src)
    )
    backup = vault_services.start_backup(actor=None, vault=vault, source=source)
    vault_services.run_backup_job(backup.pk)
    backup.refresh_from_db()
    assert backup.status == BackupJob.Status.SUCCEEDED, backup.error
    point = BackupPoint.objects.select_related("vault__region").get(pk=backup.point_id)
    assert point.size == FILES * SIZE

    dest = tmp_path / "dest"
    dest.mkdir()
    target = services.create_restore_target(
        actor=None, account=account, region=region, kind="ecs-instance", name="ecs", location=str(dest)
    )
    job = services.start_restore(actor=None, point=point, target=target)  # queued for the worker on commit

    # The worker restores 150 MiB in well under a second and saves its progress every 0.5 s, so the
    # moment to kill is taken from the target directory (files under their final names), once the job
    # has reported progress (bytes_done > 0).
    def partly_written():
        return 3 <= len(final_names(dest)) <= FILES - 8 and RestoreJob.objects.get(pk=job.pk).bytes_done > 0

    assert wait_until(partly_written, timeout=60, interval=0.002), (
        RestoreJob.objects.get(pk=job.pk).bytes_done,
        final_names(dest),
        (tmp_path / "worker.log").read_text()[-3000:],
    )
    celery_worker_process.kill()

    killed = RestoreJob.objects.get(pk=job.pk)
    assert killed.status == RestoreJob.Status.RUNNING and killed.bytes_done < killed.bytes_total
    written = final_names(dest)
    assert 0 < len(written) < FILES
    # no file under its final name is incomplete: each one present is whole and right
    for name in written:
        assert (dest / name).read_bytes() == expected[name], f"{name} is under its final name but incomplete"
    # what was being written is only under a temporary name
    assert all(n.endswith(".part") for n in os.listdir(dest) if n not in written)

    # the worker is gone; once its heartbeat is stale the job can be finished (here, in-process)
    assert services.run_restore_job(job.pk) is None  # a fresh heartbeat keeps a second runner off
    RestoreJob.objects.filter(pk=job.pk).update(heartbeat=timezone.now() - timedelta(minutes=5))
    finished = services.run_restore_job(job.pk)
    assert finished is not None and finished.status == RestoreJob.Status.SUCCEEDED, RestoreJob.objects.get(
        pk=job.pk
    ).error

    assert sorted(os.listdir(dest)) == sorted(expected)  # no temporary file left
    for name, data in expected.items():
        assert (dest / name).read_bytes() == data, name
    # the files restored before the kill were recognised by their hash and not written again
    assert finished.files_skipped >= len(written)
    assert finished.report["files_written"] + finished.files_skipped == FILES
    assert finished.files_done == FILES and finished.bytes_done == FILES * SIZE
    assert finished.files_verified == finished.report["files_written"]
