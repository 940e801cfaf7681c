"""One sync at a time per pair (replication/lease.py): no chunk copied or billed twice, no request lost."""

import os
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from replication import engine, lease, services
from replication.models import ReplicatedPoint, ReplicationPair
from tests.conftest import wait_until
from tests.replication.test_engine import files_of, start
from vaults import services as vault_services
from vaults.models import BackupPoint, Chunk, Pack

pytestmark = pytest.mark.django_db(transaction=True)  # threads with connections of their own see the rows


def in_thread(function, *args):
    """Run `function` on a thread of its own (its own database connection) and return its result."""
    result = {}

    def run():
        try:
            result["value"] = function(*args)
        except BaseException as exc:  # handed back to the test
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if "error" in result:
        raise result["error"]
    return result["value"]


def hold_as(pair_id, owner, heartbeat=None):
    ReplicationPair.objects.filter(pk=pair_id).update(sync_owner=owner, sync_heartbeat=heartbeat or timezone.now())


def test_two_syncs_of_one_pair_at_once_copy_and_bill_each_chunk_once(source_vault, backup, lrs_region, tree):
    (tree / "more.bin").write_bytes(os.urandom(6_000_000))
    points = [backup(source_vault)]
    (tree / "docs" / "second.txt").write_bytes(b"second point\n" * 20000)
    points.append(backup(source_vault))
    pair = start(source_vault, lrs_region)
    barrier = threading.Barrier(2)

    def sync():
        barrier.wait()
        return engine.sync_pair(pair.id)

    threads = [threading.Thread(target=in_thread, args=(sync,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    pair = ReplicationPair.objects.get(pk=pair.pk)
    assert pair.state == ReplicationPair.State.RUNNING and pair.error == ""
    assert (pair.sync_owner, pair.sync_heartbeat, pair.sync_wanted) == ("", None, False)
    target = pair.target_vault
    stored = sum(Pack.objects.filter(vault=target).values_list("size", flat=True))
    manifests = sum(BackupPoint.objects.filter(vault=target).values_list("manifest_size", flat=True))
    assert pair.bytes_sent == stored + manifests  # every byte sent once: one copy of each chunk
    assert Chunk.objects.filter(vault=target).count() == Chunk.objects.filter(vault=source_vault).count()
    copies = ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED)
    assert copies.count() == 2 and BackupPoint.objects.filter(vault=target).count() == 2
    for copy in copies:
        assert files_of(copy.target_point) == files_of(BackupPoint.objects.get(pk=copy.source_point_id))


def test_a_sync_asked_for_while_another_runs_is_done_by_the_running_one(source_vault, backup, lrs_region):
    pair = start(source_vault, lrs_region)
    assert lease.take(pair.id)
    assert in_thread(lease.take, pair.id) is False  # the other sync leaves it to this one...
    assert ReplicationPair.objects.get(pk=pair.pk).sync_wanted
    assert lease.release(pair.id) is True  # ...which runs one more round
    assert lease.release(pair.id) is False
    pair.refresh_from_db()
    assert (pair.sync_owner, pair.sync_heartbeat, pair.sync_wanted) == ("", None, False)

    point = backup(source_vault)
    hold_as(pair.id, f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() + 1}")  # another live thread
    engine.sync_pair(pair.id)
    assert not BackupPoint.objects.filter(vault=pair.target_vault).exists()  # left to the holder
    assert ReplicationPair.objects.get(pk=pair.pk).sync_wanted
    hold_as(pair.id, "")
    engine.sync_pair(pair.id)
    assert files_of(BackupPoint.objects.get(vault=pair.target_vault)) == files_of(point)


def test_the_lease_of_a_dead_worker_is_taken_at_once_and_a_silent_one_once_stale(source_vault, lrs_region):
    pair = start(source_vault, lrs_region)
    gone = subprocess.Popen(["true"])  # exits at once; not reaped yet, it is a zombie, as a killed worker can be
    assert wait_until(lambda: open(f"/proc/{gone.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 10)
    hold_as(pair.id, f"{socket.gethostname()}:{gone.pid}:1")  # a dead worker on this host
    assert lease.take(pair.id) and lease.release(pair.id) is False
    gone.wait()
    hold_as(pair.id, f"{socket.gethostname()}:{gone.pid}:1")  # reaped: no such process at all
    assert lease.take(pair.id) and lease.release(pair.id) is False
    hold_as(pair.id, "worker-7.elsewhere:4242:1")  # alive as far as this host can tell
    assert lease.take(pair.id) is False
    hold_as(pair.id, "worker-7.elsewhere:4242:1", timezone.now() - lease.LEASE_STALE - timedelta(seconds=1))
    assert lease.take(pair.id)


def test_the_target_garbage_waits_while_another_worker_copies_into_it(source_vault, backup, lrs_region, monkeypatch):
    # chunks copied but not yet referenced by a committed point are not garbage for the collector
    backup(source_vault)
    pair = start(source_vault, lrs_region)

    def crash(*args, **kwargs):
        raise RuntimeError("stopped before the commit")

    monkeypatch.setattr(engine, "_commit_copy", crash)  # leaves the copied chunks unreferenced, as mid-copy
    with pytest.raises(RuntimeError):
        engine.sync_pair(pair.id)
    monkeypatch.undo()
    copied = Chunk.objects.filter(vault=pair.target_vault).count()
    assert copied > 0 and ReplicationPair.objects.get(pk=pair.pk).sync_owner == ""  # dropped on the failure
    hold_as(pair.id, "worker-7.elsewhere:4242:1")
    assert vault_services.collect_garbage(pair.target_vault_id) is None
    assert Chunk.objects.filter(vault=pair.target_vault).count() == copied
    hold_as(pair.id, "")
    assert vault_services.collect_garbage(pair.target_vault_id)["chunks"] == copied


def test_a_stopped_pair_keeps_no_lease(source_vault, backup, lrs_region):
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    services.stop_replication(actor=None, pair=pair, confirmation=source_vault.name)
    engine.sync_pair(pair.id)
    pair.refresh_from_db()
    assert pair.state == ReplicationPair.State.STOPPED and pair.sync_owner == ""
