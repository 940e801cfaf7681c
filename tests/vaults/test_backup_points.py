"""Deleting backup points (rules P4, L1, V6) and garbage collection of chunks no point needs (rule P3:
what an interrupted backup stored is reused, then collected once no backup runs).

Each test builds sources whose files are disjoint random data, so which pack holds what is known:
every backup's new chunks go into one pack of their own (far below the 16 MiB pack target).
"""

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from console.jobs import HEARTBEAT_STALE
from console.models import AuditLog
from tests.vaults.conftest import (
    KiB,
    RawStore,
    assert_point_matches,
    backup_ok,
    make_source,
    random_bytes,
    snapshot,
    stored_bytes_of,
    write,
)
from vaults import services
from vaults.dataplane.backup import PointWriter, chunk_stream
from vaults.dataplane.chunkstore import ChunkCodec
from vaults.dataplane.keys import vault_keys
from vaults.dataplane.objectstore import region_store
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint, Chunk, Vault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]

X = random_bytes(700 * KiB, 51)
Y = random_bytes(600 * KiB, 52)
Z = random_bytes(500 * KiB, 53)


def packs(vault):
    return set(RawStore(vault.region).keys(vault.storage_prefix + "packs/"))


def manifests(vault):
    return set(RawStore(vault.region).keys(vault.storage_prefix + "manifests/"))


def assert_size_is_real(vault):
    # rule V6: the vault's data size is what its objects occupy in the store
    assert Vault.objects.get(pk=vault.pk).data_size == stored_bytes_of(vault)


def tree(base, name, **files):
    root = base / name
    root.mkdir(parents=True)
    for filename, data in files.items():
        write(root / filename, data)
    return root


def test_delete_point_removes_only_what_no_other_point_needs(tmp_path, account, region, normal_vault):
    # rules P4, V6: a deleted point takes its manifest and the chunks no remaining point needs; chunks a
    # remaining point needs stay, and every remaining point still reads back in full
    vault = normal_vault()
    dir_x = tree(tmp_path, "x", **{"x.bin": X})
    dir_xy = tree(tmp_path, "xy", **{"x.bin": X, "y.bin": Y})
    dir_y = tree(tmp_path, "y", **{"y.bin": Y})
    p1 = backup_ok(vault, make_source(account, region, "ecs-file", path=dir_x)).point
    pack_x = packs(vault)
    p2 = backup_ok(vault, make_source(account, region, "ecs-file", path=dir_xy)).point
    pack_y = packs(vault) - pack_x
    p3 = backup_ok(vault, make_source(account, region, "ecs-file", path=dir_y)).point
    assert len(pack_x) == len(pack_y) == 1 and packs(vault) == pack_x | pack_y
    assert manifests(vault) == {p1.manifest_key, p2.manifest_key, p3.manifest_key}
    size = stored_bytes_of(vault)

    # p1's chunks (x.bin) are still needed by p2: only its manifest goes
    services.delete_point(actor=None, point=p1)
    assert not BackupPoint.objects.filter(pk=p1.pk).exists()
    assert manifests(vault) == {p2.manifest_key, p3.manifest_key}
    assert packs(vault) == pack_x | pack_y
    assert stored_bytes_of(vault) == size - p1.manifest_size
    assert verify_vault(vault)["problems"] == []
    assert_point_matches(p2, snapshot(dir_xy))
    assert_size_is_real(vault)

    # now nothing needs x.bin: its chunks and its pack object go; y.bin's stay for p3
    x_chunks = Chunk.objects.filter(vault=vault, pack__key__in=pack_x).count()
    assert x_chunks > 0
    services.delete_point(actor=None, point=p2)
    assert manifests(vault) == {p3.manifest_key}
    assert packs(vault) == pack_y
    assert not Chunk.objects.filter(vault=vault, pack__key__in=pack_x).exists()
    assert stored_bytes_of(vault) < size - len(X)
    report = verify_vault(vault)
    assert report["problems"] == [] and report["points"] == 1
    assert_point_matches(p3, snapshot(dir_y))
    assert_size_is_real(vault)
    assert AuditLog.objects.filter(action="delete_point", outcome="success").count() == 2


@pytest.mark.parametrize("retention_days", [30, None])
def test_backup_lock_refuses_deleting_an_unexpired_point(tmp_path, account, region, normal_vault, retention_days):
    # rule L1: under a backup lock no point can be deleted before it expires (a point with no expiry never
    # expires); the refusal is audited and nothing is removed
    vault = normal_vault()
    root = tree(tmp_path, "src", **{"x.bin": X})
    point = backup_ok(vault, make_source(account, region, "ecs-file", path=root), retention_days=retention_days).point
    vault = services.enable_backup_lock(actor=None, vault=vault)
    before = (packs(vault), manifests(vault))

    with pytest.raises(ValidationError, match="[Bb]ackup lock"):
        services.delete_point(actor=None, point=BackupPoint.objects.get(pk=point.pk))

    assert BackupPoint.objects.filter(pk=point.pk).exists()
    assert (packs(vault), manifests(vault)) == before
    assert verify_vault(vault)["problems"] == []
    refusal = AuditLog.objects.get(action="delete_point")
    assert (refusal.outcome, refusal.object_id) == (AuditLog.Outcome.REFUSED, point.id)


def test_backup_lock_allows_deleting_an_expired_point(tmp_path, account, region, normal_vault):
    # rule L1: once a locked point has expired, it can be deleted with its data
    vault = normal_vault()
    root = tree(tmp_path, "src", **{"x.bin": X})
    point = backup_ok(vault, make_source(account, region, "ecs-file", path=root), retention_days=30).point
    soon = timezone.now() + timedelta(seconds=1)
    BackupPoint.objects.filter(pk=point.pk).update(expires=soon)  # before the lock: it is shortened no more after
    services.enable_backup_lock(actor=None, vault=vault)
    time.sleep(max(0, (soon - timezone.now()).total_seconds()) + 0.2)  # the point expires

    services.delete_point(actor=None, point=BackupPoint.objects.select_related("vault").get(pk=point.pk))

    assert not BackupPoint.objects.filter(pk=point.pk).exists()
    assert packs(vault) == set() and manifests(vault) == set()
    assert Vault.objects.get(pk=vault.pk).data_size == 0


def crashed_backup(vault, scratch, *datas):
    """What a backup killed before its commit leaves: chunks sealed, packs uploaded and indexed, no point.

    Each data is flushed into a pack of its own, as a writer does when a pack fills.
    """
    writer = PointWriter(vault, region_store(vault.region), ChunkCodec(vault_keys(vault)))
    keys = []
    for data in datas:
        before = packs(vault)
        path = write(scratch / f"crash-{len(keys)}.bin", data)
        with open(path, "rb", buffering=0) as f:
            chunk_stream(writer, f, lambda n: None)
        writer.flush()
        keys.append(packs(vault) - before)
    writer.abort()  # the worker dies here: no manifest, no commit
    return keys


def running_job(vault, source, heartbeat):
    return BackupJob.objects.create(
        account=vault.account,
        vault=vault,
        source=source,
        status=BackupJob.Status.RUNNING,
        started=heartbeat,
        heartbeat=heartbeat,
    )


def test_chunks_of_a_crashed_backup_are_reused_then_collected(tmp_path, account, region, normal_vault):
    # rule P3: an interrupted backup leaves no point; the next backup of the same data stores nothing new,
    # and garbage collection removes what no point needs
    vault = normal_vault()
    pack_x, pack_z = crashed_backup(vault, tmp_path / "crash", X, Z)
    assert len(pack_x) == len(pack_z) == 1
    assert not BackupPoint.objects.exists() and manifests(vault) == set()

    root = tree(tmp_path, "src", **{"x.bin": X})
    job = backup_ok(vault, make_source(account, region, "ecs-file", path=root))
    assert job.bytes_stored == 0, "the chunks the crashed backup stored are reused"
    assert_point_matches(job.point, snapshot(root))

    result = services.collect_garbage(vault.pk)
    assert result is not None and result["chunks"] > 0
    assert packs(vault) == pack_x, "z.bin's pack (no point needs it) is collected, x.bin's is kept"
    assert not Chunk.objects.filter(vault=vault, pack__key__in=pack_z).exists()
    assert verify_vault(vault)["problems"] == []
    assert_size_is_real(vault)


def test_garbage_collection_waits_for_a_running_backup(tmp_path, account, region, normal_vault):
    # rule P3: while a backup of the vault runs (fresh heartbeat), garbage collection does nothing, since
    # the job may be about to reference chunks that no point holds yet; once its heartbeat is stale, it runs
    vault = normal_vault()
    [pack_z] = crashed_backup(vault, tmp_path / "crash", Z)
    source = make_source(account, region, "ecs-file", path=tree(tmp_path, "src", **{"y.bin": Y}))
    chunks = Chunk.objects.filter(vault=vault).count()
    job = running_job(vault, source, heartbeat=timezone.now())

    assert services.collect_garbage(vault.pk) is None
    assert packs(vault) == pack_z and Chunk.objects.filter(vault=vault).count() == chunks

    BackupJob.objects.filter(pk=job.pk).update(heartbeat=timezone.now() - 2 * HEARTBEAT_STALE)
    result = services.collect_garbage(vault.pk)
    assert result is not None and result["chunks"] == chunks
    assert packs(vault) == set() and not Chunk.objects.filter(vault=vault).exists()
    assert Vault.objects.get(pk=vault.pk).data_size == 0 == stored_bytes_of(vault)
