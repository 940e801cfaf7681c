"""Replication under faults, with a real worker: SIGKILLs at random moments of a copy, and an unreachable
destination store."""

import os
import random
import time
from pathlib import Path

import pytest

from console.models import AuditLog, Region
from replication import engine, services
from replication.models import ReplicatedPoint, ReplicationPair
from tests.conftest import free_port, wait_until
from vaults import services as vault_services
from vaults.dataplane.chunkstore import PACK_TARGET
from vaults.dataplane.objectstore import region_store
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import BackupJob, BackupPoint, Chunk, Pack, Tier, Vault, VaultType

MiB = 1 << 20


def files_of(point):
    reader = PointReader(point)
    return {e["path"]: b"".join(reader.iter_file(e)) for e in reader.manifest()["entries"] if e["type"] == "file"}


def back_up(vault, source):
    """One committed point, run here; the worker's copy of the task finds the job claimed or done."""
    job = vault_services.start_backup(actor=None, vault=vault, source=source)
    vault_services.run_backup_job(job.pk)
    assert wait_until(lambda: not BackupJob.objects.get(pk=job.pk).is_active, timeout=60)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    return BackupPoint.objects.get(pk=job.point_id)


def big_source(make_vault, account, region, tree, name, *, points=3, mib=50):
    """A source vault with `points` points, each adding `mib` MiB of random (incompressible) data; and its source."""
    source_vault = vault_services.initialize_vault_storage(make_vault(name).id)
    tree.mkdir()
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name=name, path=str(tree)
    )
    for n in range(points):
        for i in range(mib // 10):
            (tree / f"p{n}-{i}.bin").write_bytes(os.urandom(10 * MiB))
        back_up(source_vault, source)
    return source_vault, source


def replicate(source_vault, region, target_name):
    """Start replication to a new target; its trigger queues the historical sync on the worker's queue."""
    return services.start_replication(
        actor=None,
        source_vault=source_vault,
        destination_region=region,
        create={"name": target_name, "description": "", "resource_group": None},
    )


def stored_object_bytes(vault):
    """Every complete object of the vault in its region's (local) store: what really reached the region."""
    store = region_store(vault.region)
    return sum(os.path.getsize(Path(store.root) / key) for key in store.list_keys(vault.storage_prefix))


def indexed_bytes(vault):
    return sum(Chunk.objects.filter(vault=vault).values_list("length", flat=True))


def pair_of(pair_id):
    return ReplicationPair.objects.select_related("source_vault__region", "target_vault__region").get(pk=pair_id)


def assert_no_half_point(pair_id, target):
    """The target's points are exactly the committed copies: nothing partial, nothing twice."""
    committed = ReplicatedPoint.objects.filter(pair_id=pair_id, state=ReplicatedPoint.State.COMMITTED)
    points = list(BackupPoint.objects.filter(vault=target).values_list("pk", flat=True))
    assert sorted(points) == sorted(committed.values_list("target_point_id", flat=True))


@pytest.mark.worker
def test_sync_killed_at_random_moments_resumes_without_resending_and_leaves_no_partial_point(
    celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules R8, R11 (no partial point, same data verified by hash), B1 (bytes sent once)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    source_vault, _ = big_source(make_vault, account, region, tmp_path / "data", "big-source")
    source_vault.refresh_from_db()
    source_stored = source_vault.data_size
    assert source_stored >= 150 * MiB

    pair = replicate(source_vault, lrs_region, "big-target")
    target = pair.target_vault
    kills = 0
    for _ in range(3):  # SIGKILL the worker (and its pool) at a random moment of the copy, three times
        threshold = indexed_bytes(target) + rng.randrange(1, 32) * MiB
        assert wait_until(
            lambda t=threshold: indexed_bytes(target) >= t or pair_of(pair.id).state == ReplicationPair.State.RUNNING,
            timeout=60,
            interval=0.002,
        ), f"seed {seed}: copied {indexed_bytes(target)} of {source_stored} bytes; {pair_of(pair.id).error}"
        time.sleep(rng.uniform(0, 0.03))  # anywhere in the pipeline: reading, sealing, uploading, committing
        if pair_of(pair.id).state == ReplicationPair.State.RUNNING:
            break
        celery_worker_process.kill()
        kills += 1
        assert pair_of(pair.id).history_points_done < 3
        assert_no_half_point(pair.id, target)
        celery_worker_process.start()
        services.enqueue_sync(pair.id)  # as the periodic reconcile does
    assert kills >= 2, f"seed {seed}: the sync ended before the second kill"

    assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=60), pair_of(
        pair.id
    ).error
    pair = pair_of(pair.id)
    assert pair.error == "" and pair.history_percent == 100
    assert (pair.history_points_total, pair.history_points_done) == (3, 3)

    # one copy per source point, each byte-identical, and nothing else at the target
    copies = list(ReplicatedPoint.objects.filter(pair=pair))
    standard = BackupPoint.objects.filter(vault=source_vault, tier=Tier.STANDARD)
    assert sorted(c.source_point_id for c in copies) == sorted(standard.values_list("pk", flat=True))
    assert all(c.state == ReplicatedPoint.State.COMMITTED for c in copies)
    assert_no_half_point(pair.id, target)
    assert BackupPoint.objects.filter(vault=target).count() == standard.count() == 3
    for copy in copies:
        source_point = BackupPoint.objects.get(pk=copy.source_point_id)
        assert copy.target_point.vault_id == target.id and copy.target_point.size == source_point.size
        assert files_of(copy.target_point) == files_of(source_point)
    assert verify_vault(Vault.objects.get(pk=target.pk))["problems"] == []

    # the chunks indexed before a kill were not sent again (B1 counts a pack when it is indexed); what
    # reached the target's store beyond the source's data is at most the packs in flight at each kill
    in_flight = engine.COPY_THREADS * PACK_TARGET
    assert pair.bytes_sent <= source_stored + MiB, f"seed {seed}"
    assert stored_object_bytes(target) <= source_stored + kills * in_flight + MiB, f"seed {seed}"
    # those unindexed packs are orphans: once old enough, garbage collection removes them, and only them
    store = region_store(target.region)
    old = time.time() - vault_services.gc.ORPHAN_AGE.total_seconds() - 60
    for key in store.list_keys(target.storage_prefix):
        os.utime(Path(store.root) / key, (old, old))
    vault_services.collect_garbage(target.id)
    assert set(store.list_keys(target.storage_prefix + "packs/")) == set(
        Pack.objects.filter(vault=target).values_list("key", flat=True)
    )
    target = Vault.objects.get(pk=target.pk)
    assert stored_object_bytes(target) - len(store.get(target.storage_prefix + "vault.json")) == target.data_size
    assert verify_vault(target)["problems"] == []
    assert all(files_of(c.target_point) == files_of(BackupPoint.objects.get(pk=c.source_point_id)) for c in copies)


@pytest.fixture
def s3_credentials(settings, isolated_stores):
    """Keys for any S3 endpoint a region points at, so an unreachable one fails on connecting."""
    settings.OBJECT_STORE = {**settings.OBJECT_STORE, "access_key": "testing", "secret_key": "testing"}


@pytest.mark.worker
def test_unreachable_destination_store_shows_the_error_and_recovers(
    s3_credentials, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules R8, R11: a failing copy is shown on the pair and audited, leaves no point, and is retried
    source_vault = vault_services.initialize_vault_storage(make_vault("src").id)
    tree = tmp_path / "small"
    tree.mkdir()
    (tree / "random.bin").write_bytes(os.urandom(3 * MiB))
    (tree / "notes.txt").write_bytes(b"replicate me\n" * 5000)
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="small", path=str(tree)
    )
    point = back_up(source_vault, source)
    target = vault_services.initialize_vault_storage(
        make_vault("dr", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    port = free_port()  # nothing listens there
    Region.objects.filter(pk=lrs_region.pk).update(store_backend="s3", store_endpoint_url=f"http://127.0.0.1:{port}")

    pair = services.start_replication(
        actor=None, source_vault=source_vault, destination_region=lrs_region, target_vault=target
    )
    assert wait_until(lambda: pair_of(pair.id).error, timeout=40)
    pair = pair_of(pair.id)
    assert pair.error.startswith("ObjectStoreError:") and f"127.0.0.1:{port}" in pair.error, pair.error
    assert pair.state == ReplicationPair.State.SYNCING and pair.error_since is not None
    assert AuditLog.objects.filter(
        action="replication_error", object_id=pair.id, outcome="failed", account=account
    ).exists()
    assert not BackupPoint.objects.filter(vault=target).exists()
    assert ReplicatedPoint.objects.get(pair=pair).state == ReplicatedPoint.State.PENDING

    Region.objects.filter(pk=lrs_region.pk).update(store_backend="", store_endpoint_url="")
    services.enqueue_sync(pair.id)  # the retry with backoff or the reconcile would do the same, later
    assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=40)
    pair = pair_of(pair.id)
    assert (pair.error, pair.error_since, pair.attempts) == ("", None, 0)
    replica = ReplicatedPoint.objects.get(pair=pair, state=ReplicatedPoint.State.COMMITTED).target_point
    assert replica.vault_id == target.id and files_of(replica) == files_of(point)
    assert AuditLog.objects.filter(action="replication_error", object_id=pair.id).count() == 1
