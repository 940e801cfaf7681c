"""A worker stopped (SIGTERM, as a service manager or Ctrl-C in `make run` does) in the middle of a backup.

It gives the running job its soft shutdown time (CLOUD_BACKUP_WORKER_STOP_SECONDS), then ends it: the job is
handed back to the queue at once, not left running for the reaper to fail 90 s later, and the next worker
finishes it. The worker is gone within that time and a few seconds more, never waiting for the job's end.
"""

import time

import pytest

from console.models import AuditLog
from tests.conftest import wait_until
from vaults import services
from vaults.models import BackupJob, BackupPoint

SIZE = 3 << 30  # sparse: long to read (about 10 s here), nothing on disk
STOP_SECONDS = 1


@pytest.fixture
def short_soft_shutdown(monkeypatch):
    monkeypatch.setenv("CLOUD_BACKUP_WORKER_STOP_SECONDS", str(STOP_SECONDS))


@pytest.mark.worker
def test_a_stopped_worker_hands_its_job_back_and_the_next_one_finishes_it(
    short_soft_shutdown, celery_worker_process, make_vault, account, region, tmp_path
):
    vault = services.initialize_vault_storage(make_vault("long").id)
    tree = tmp_path / "sparse"
    tree.mkdir()
    with open(tree / "zeros.bin", "wb") as f:
        f.truncate(SIZE)
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="sparse", path=str(tree)
    )
    job = services.start_backup(actor=None, vault=vault, source=source)
    assert wait_until(lambda: BackupJob.objects.get(pk=job.pk).bytes_done > 0, timeout=60, interval=0.05)

    asked = time.monotonic()
    celery_worker_process.terminate()
    stopped_in = time.monotonic() - asked
    job.refresh_from_db()
    assert (job.status, job.attempt, job.error) == (BackupJob.Status.QUEUED, "", ""), job.error
    assert 0 < job.bytes_done < SIZE and not BackupPoint.objects.exists()
    assert stopped_in < STOP_SECONDS + 10
    print(f"worker stop: SIGTERM mid-backup, the worker gone in {stopped_in:.1f} s, its job handed back")

    celery_worker_process.start()
    assert wait_until(lambda: not BackupJob.objects.get(pk=job.pk).is_active, timeout=120)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert BackupPoint.objects.get(pk=job.point_id).size == SIZE
    assert not AuditLog.objects.filter(action="run_backup", outcome="failed").exists()
