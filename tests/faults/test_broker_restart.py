"""The broker restarts: a Redis of the test's own, killed and started again.

The Redis runs without persistence, as this machine's does, so a restart loses every
queued and unacknowledged message. Mid-sync, that is the sync in flight and the trigger
of a point committed while the broker is down: the periodic reconcile (run here as beat
would) must bring the target in step with no point lost, duplicated or partial, and
without sending again what was already copied. A backup job or a vault initialization
whose message is lost is sent again by the periodic reaper.
"""

import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from console import jobs
from console.celery import app
from console.jobs import QUEUED_STALE
from console.tasks import job_upkeep_task
from replication.models import ReplicatedPoint, ReplicationPair
from replication.tasks import reconcile_pairs_task
from tests.conftest import free_port, wait_for_port, wait_until
from tests.faults.test_replication_killed import big_source, files_of, indexed_bytes, pair_of, replicate
from vaults import services as vault_services
from vaults.dataplane.chunkstore import PACK_TARGET
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint, Tier, Vault, VaultStatus

MiB = 1 << 20


class RedisServer:
    """A redis-server on a loopback port of its own, with no persistence: a restart empties it."""

    def __init__(self, workdir):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        assert os.path.exists(binary), "redis-server is needed (Debian package redis-server)"
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.kill()


def use_broker(url):
    """Point this process's Celery app at `url`: its connection pools are made again on the next send."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_url(redis_server, settings, monkeypatch):
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads it before its configuration
    use_broker(url)
    yield url
    use_broker(previous)


@pytest.mark.worker
def test_a_broker_restart_mid_sync_loses_and_duplicates_no_point(
    redis_server, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules R8, R11: no lost, duplicate or partial point; B1: what was copied is not sent again
    source_vault, source = big_source(make_vault, account, region, tmp_path / "data", "redis-source", mib=60)
    pair = replicate(source_vault, lrs_region, "redis-target")
    target = pair.target_vault
    # a backup job queued behind the sync (the worker runs one task at a time)
    (tmp_path / "data" / "part-3.bin").write_bytes(os.urandom(10 * MiB))
    job = vault_services.start_backup(actor=None, vault=source_vault, source=source)
    assert wait_until(lambda: indexed_bytes(target) > 0, timeout=60, interval=0.002), pair_of(pair.id).error
    redis_server.kill()  # mid-sync: its message, unacknowledged, and the job's are lost with the broker
    assert pair_of(pair.id).history_points_done < 3

    # the broker is down: the job still runs (here, as a worker that had it would) and commits; its
    # trigger cannot reach the queue, which the pair shows, and the backup does not fail because of it
    point = vault_services.run_backup_job(job.pk)
    assert point is not None and BackupJob.objects.get(pk=job.pk).status == BackupJob.Status.SUCCEEDED
    assert "task queue could not be reached" in pair_of(pair.id).error

    redis_server.start()  # empty
    reconcile_pairs_task()  # what beat runs every minute: a sync for every running pair
    assert wait_until(
        lambda: ReplicatedPoint.objects.filter(
            pair=pair, source_point_id=point.id, state=ReplicatedPoint.State.COMMITTED
        ).exists(),
        timeout=120,
        interval=0.5,
    ), pair_of(pair.id).error
    assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=60)
    pair = pair_of(pair.id)
    assert pair.error == "" and (pair.history_points_total, pair.history_points_done) == (3, 3)

    copies = list(ReplicatedPoint.objects.filter(pair=pair))
    standard = BackupPoint.objects.filter(vault=source_vault, tier=Tier.STANDARD)
    assert standard.count() == 4
    assert sorted(c.source_point_id for c in copies) == sorted(standard.values_list("pk", flat=True))
    assert all(c.state == ReplicatedPoint.State.COMMITTED for c in copies)
    assert BackupPoint.objects.filter(vault=target).count() == 4
    for copy in copies:
        assert files_of(copy.target_point) == files_of(BackupPoint.objects.get(pk=copy.source_point_id))
    assert verify_vault(Vault.objects.get(pk=target.pk))["problems"] == []
    source_vault.refresh_from_db()
    assert pair.bytes_sent <= source_vault.data_size + PACK_TARGET + MiB  # nothing sent twice but a pack in flight


@pytest.mark.worker
def test_a_job_and_a_vault_initialization_whose_messages_were_lost_are_sent_again(
    redis_server, celery_worker_process, make_vault, account, region, tmp_path
):
    vault = vault_services.initialize_vault_storage(make_vault("lost-job").id)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_bytes(b"queued before the broker restarted\n" * 1000)
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="l", path=str(tmp_path / "data")
    )
    celery_worker_process.kill()  # nobody takes the messages before the broker loses them
    job = vault_services.start_backup(actor=None, vault=vault, source=source)
    initializing = vault_services.create_vault(actor=None, account=account, region=region, name="lost-init")
    redis_server.kill()
    redis_server.start()  # empty: both messages are gone
    celery_worker_process.start()

    job_upkeep_task()  # queued a moment ago: they may just be waiting, nothing is sent again
    assert BackupJob.objects.get(pk=job.pk).status == BackupJob.Status.QUEUED
    long_ago = timezone.now() - QUEUED_STALE - timedelta(seconds=1)
    BackupJob.objects.filter(pk=job.pk).update(created=long_ago)
    Vault.objects.filter(pk=initializing.pk).update(updated=long_ago)
    assert jobs.requeue(vault_services.BACKUP) == [job.pk]
    assert vault_services.requeue_stalled_initializations() == [initializing.pk]
    assert jobs.requeue(vault_services.BACKUP) == []  # once per period, not on every pass

    assert wait_until(lambda: not BackupJob.objects.get(pk=job.pk).is_active, timeout=60)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert BackupPoint.objects.filter(vault=vault).count() == 1
    assert wait_until(lambda: Vault.objects.get(pk=initializing.pk).status == VaultStatus.NORMAL, timeout=60)
