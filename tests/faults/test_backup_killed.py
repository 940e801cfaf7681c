"""Rule P3 under a crash: SIGKILL the worker in the middle of a backup, then run it again."""

import os

import pytest

from console import jobs
from console.jobs import HEARTBEAT_STALE
from tests.conftest import wait_until
from vaults import services
from vaults.dataplane.chunkstore import PACK_TARGET
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import BackupJob, BackupPoint, Chunk


@pytest.mark.worker
def test_killed_backup_leaves_no_point_and_the_rerun_reuses_stored_chunks(
    celery_worker_process, make_vault, account, region, tmp_path
):
    vault = services.initialize_vault_storage(make_vault("crashy").id)
    tree = tmp_path / "big"
    tree.mkdir()
    for i in range(12):
        (tree / f"part-{i:02d}.bin").write_bytes(os.urandom(24 << 20))
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="big", path=str(tree)
    )
    job = services.start_backup(actor=None, vault=vault, source=source)
    # killed once its first packs are stored and indexed (progress is saved only twice a second, and the
    # whole backup takes well under one on this machine)
    assert wait_until(lambda: Chunk.objects.filter(vault=vault).exists(), timeout=60, interval=0.005)
    celery_worker_process.kill()
    job.refresh_from_db()
    assert job.status == BackupJob.Status.RUNNING and job.bytes_done < job.bytes_total
    assert not BackupPoint.objects.exists()  # no half point
    stored_before = Chunk.objects.filter(vault=vault).count()
    assert stored_before > 0

    # The dead job is reaped once its heartbeat is stale; the next run finishes.
    BackupJob.objects.filter(pk=job.pk).update(heartbeat=job.heartbeat - HEARTBEAT_STALE * 2)
    assert jobs.reap(services.BACKUP) == [job.pk]
    celery_worker_process.start()
    rerun = services.start_backup(actor=None, vault=vault, source=source)
    assert wait_until(lambda: not BackupJob.objects.get(pk=rerun.pk).is_active, timeout=120)
    rerun.refresh_from_db()
    assert rerun.status == BackupJob.Status.SUCCEEDED, rerun.error
    total = 12 * (24 << 20)
    assert rerun.bytes_done == total
    # random data does not compress: what was stored before the kill is not sent again
    stored_by_killed_job = sum(c.length for c in Chunk.objects.filter(vault=vault)) - rerun.bytes_stored
    assert stored_by_killed_job >= PACK_TARGET * 0.9
    assert rerun.bytes_stored <= total - stored_by_killed_job + (1 << 20)

    point = BackupPoint.objects.get()
    reader = PointReader(point)
    for entry in reader.manifest()["entries"]:
        assert b"".join(reader.iter_file(entry)) == (tree / entry["path"]).read_bytes()
    assert verify_vault(vault)["problems"] == []
