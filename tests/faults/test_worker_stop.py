"""A worker stopped (SIGTERM, as a service manager or Ctrl-C in `make run` does) in the middle of a backup.

It gives the running job its soft shutdown time (CLOUD_BACKUP_WORKER_STOP_SECONDS), then ends it: the job is
handed back to the queue at once, not left running for the reaper to fail 90 s later, and the next worker
finishes it. The worker is gone within that time and a few seconds more, never waiting for the job's end.
"""

import time

import pytest

from console import audit, jobs
from console.models import AuditLog
from tests.conftest import wait_until
from vaults import services
from vaults.dataplane.objectstore import region_store
from vaults.dataplane.readback import verify_vault
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


# The two tests below raise SystemExit where billiard raises it when a stopping worker ends a pool process: at
# a moment a real signal cannot be aimed at (inside an on_commit hook; with the broker unreachable).


def test_a_stop_just_after_a_backup_commits_keeps_the_points_manifest(
    transactional_db, monkeypatch, make_vault, account, region, tmp_path
):
    vault = services.initialize_vault_storage(make_vault("committed").id)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"hello\n")
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="src", path=str(tmp_path / "src")
    )
    job = services.start_backup(actor=None, vault=vault, source=source)
    real_seal = audit.seal

    def seal():  # the audit sealer runs on commit: the stop lands there
        if BackupPoint.objects.exists():
            raise SystemExit(-3)
        return real_seal()

    monkeypatch.setattr(audit, "seal", seal)
    with pytest.raises(SystemExit):
        services.run_backup_job(job.pk)
    job.refresh_from_db()
    point = BackupPoint.objects.get()
    assert job.status == BackupJob.Status.SUCCEEDED and job.point_id == point.pk
    assert region_store(vault.region).exists(point.manifest_key)
    assert verify_vault(vault)["problems"] == []


def test_a_job_handed_back_while_the_broker_is_away_stays_queued(
    transactional_db, monkeypatch, make_vault, account, region, tmp_path
):
    vault = services.initialize_vault_storage(make_vault("away").id)
    (tmp_path / "src").mkdir()
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="src", path=str(tmp_path / "src")
    )
    job = services.start_backup(actor=None, vault=vault, source=source)

    def stopped(job):
        raise SystemExit(-3)

    def no_broker(*args, **kwargs):
        raise ConnectionError("the broker is away")

    monkeypatch.setattr(jobs.current_app, "send_task", no_broker)
    with pytest.raises(SystemExit):
        jobs.run(services.BACKUP, job.pk, stopped)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.error) == (BackupJob.Status.QUEUED, "", "")
