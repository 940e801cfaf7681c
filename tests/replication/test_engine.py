"""The copy engine through its services, run in-process: history, new points, lifecycle, stop."""

import os

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count

from console.models import AuditLog
from replication import engine, services
from replication.models import CrossRegionTraffic, ReplicatedPoint, ReplicationPair
from tests.replication.conftest import create_target
from vaults import services as vault_services
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import BackupPoint, Chunk, Tier, VaultType


def files_of(point):
    reader = PointReader(point)
    return {e["path"]: b"".join(reader.iter_file(e)) for e in reader.manifest()["entries"] if e["type"] == "file"}


def start(source_vault, region, **kwargs):
    return services.start_replication(
        actor=None, source_vault=source_vault, destination_region=region, create=create_target(), **kwargs
    )


def test_historical_sync_copies_every_standard_point_byte_for_byte(source_vault, backup, lrs_region, tree):
    # rules R8, R11
    first = backup(source_vault)
    (tree / "docs" / "new.txt").write_bytes(b"second point\n" * 1000)
    second = backup(source_vault)
    pair = start(source_vault, lrs_region)
    target = pair.target_vault
    assert target.vault_type == VaultType.REPLICATION_TARGET and target.region == lrs_region
    pair = engine.sync_pair(pair.id)
    assert pair.state == ReplicationPair.State.RUNNING
    assert (pair.history_points_total, pair.history_points_done) == (2, 2)
    assert pair.history_bytes_done == first.size + second.size and pair.history_percent == 100
    copies = {c.source_point_id: c.target_point for c in ReplicatedPoint.objects.filter(pair=pair)}
    for point in (first, second):
        replica = copies[point.id]
        assert replica.vault == target and replica.created == point.created and replica.expires == point.expires
        assert files_of(replica) == files_of(point)
    assert verify_vault(target)["problems"] == []
    # the second point shares most chunks with the first: sent once
    assert pair.bytes_sent < (first.size + second.size) and pair.bytes_sent > 0
    assert CrossRegionTraffic.objects.get(pair=pair).bytes_sent == pair.bytes_sent


def test_new_points_replicate_and_only_missing_chunks_are_sent(source_vault, backup, lrs_region, tree):
    # rule R8: continuous; copying is planned from the index
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    sent_before = pair.bytes_sent
    (tree / "docs" / "delta.txt").write_bytes(b"a small change\n" * 100)
    new = backup(source_vault)
    pair = engine.sync_pair(pair.id)
    copy = ReplicatedPoint.objects.get(pair=pair, source_point_id=new.id)
    assert copy.state == ReplicatedPoint.State.COMMITTED and not copy.is_history
    assert copy.bytes_sent < 10_000  # the new file's chunk and a manifest, not the whole point
    assert pair.bytes_sent == sent_before + copy.bytes_sent
    assert files_of(copy.target_point) == files_of(new)


def test_target_encryption_is_its_own(source_vault, backup, lrs_region):
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    from vaults.dataplane.keys import vault_keys

    src, dst = vault_keys(source_vault), vault_keys(pair.target_vault)
    assert src.data_key != dst.data_key and src.chunk_id_key == dst.chunk_id_key
    assert set(Chunk.objects.filter(vault=source_vault).values_list("chunk_id", flat=True)) == set(
        Chunk.objects.filter(vault=pair.target_vault).values_list("chunk_id", flat=True)
    )


def test_deleted_and_archived_source_points_go_at_the_target(source_vault, backup, lrs_region, tree):
    # rules R9, R10
    first = backup(source_vault)
    (tree / "docs" / "x.txt").write_bytes(b"x" * 5000)
    second = backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    assert BackupPoint.objects.filter(vault=pair.target_vault).count() == 2
    vault_services.delete_point(actor=None, point=first)
    vault_services.archive_point(second)
    engine.sync_pair(pair.id)
    assert not BackupPoint.objects.filter(vault=pair.target_vault).exists()
    assert not BackupPoint.objects.filter(vault=source_vault, tier=Tier.STANDARD).exists()


def test_target_points_cannot_be_changed_by_hand_while_the_pair_runs(source_vault, backup, lrs_region):
    # rule R9
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    replica = BackupPoint.objects.get(vault=pair.target_vault)
    with pytest.raises(ValidationError, match="replication target"):
        vault_services.delete_point(actor=None, point=replica)
    with pytest.raises(ValidationError, match="replication target"):
        vault_services.set_point_retention(actor=None, point=replica, expires=None)
    with pytest.raises(ValidationError, match="read-only"):
        vault_services.start_backup(actor=None, vault=pair.target_vault, source=_any_source())


def _any_source():
    from vaults.models import BackupSource

    return BackupSource.objects.first()


def test_stop_is_final_and_the_target_becomes_standalone(source_vault, backup, lrs_region, tree):
    # rules R12, R13, L1
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    target = pair.target_vault
    with pytest.raises(ValidationError, match="stop its replication first"):
        vault_services.delete_vault(actor=None, vault=source_vault, confirmation=source_vault.name)
    with pytest.raises(ValidationError, match="target of a running replication"):
        vault_services.delete_vault(actor=None, vault=target, confirmation=target.name)
    with pytest.raises(ValidationError, match="once its replication is stopped"):
        vault_services.enable_backup_lock(actor=None, vault=target)
    with pytest.raises(ValidationError, match="Type the source vault"):
        services.stop_replication(actor=None, pair=pair, confirmation="wrong")
    services.stop_replication(actor=None, pair=pair, confirmation=source_vault.name)
    with pytest.raises(ValidationError, match="already stopped"):
        services.stop_replication(actor=None, pair=pair)
    (tree / "docs" / "after.txt").write_bytes(b"after the stop")
    backup(source_vault)
    engine.sync_pair(pair.id)
    assert BackupPoint.objects.filter(vault=target).count() == 1  # nothing new reached the target
    replica = BackupPoint.objects.get(vault=target)
    vault_services.enable_backup_lock(actor=None, vault=target)
    vault_services.delete_vault(actor=None, vault=source_vault, confirmation=source_vault.name)
    target.refresh_from_db()
    assert BackupPoint.objects.filter(pk=replica.pk).exists() and target.backup_lock


def test_stop_racing_an_in_flight_copy_commits_nothing(source_vault, backup, lrs_region, monkeypatch):
    # rule R12: the copy's data is all there, but the stop lands before its commit
    backup(source_vault)
    pair = start(source_vault, lrs_region)
    real_commit = engine._commit_copy

    def stop_then_commit(*args, **kwargs):
        services.stop_replication(actor=None, pair=pair)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(engine, "_commit_copy", stop_then_commit)
    with pytest.raises(engine.PairStopped):
        engine.sync_pair(pair.id)
    assert not BackupPoint.objects.filter(vault=pair.target_vault).exists()
    assert not any("manifests" in k for k in _keys(pair.target_vault))


def _keys(vault):
    from vaults.dataplane.objectstore import region_store

    return region_store(vault.region).list_keys(vault.storage_prefix)


def test_a_rerun_after_a_crash_sends_only_what_is_missing(source_vault, backup, lrs_region, monkeypatch):
    # crash safety: the chunks copied before the crash are not sent again
    point = backup(source_vault)
    pair = start(source_vault, lrs_region)

    def crash(*args, **kwargs):
        raise RuntimeError("worker died before the commit")

    monkeypatch.setattr(engine, "_commit_copy", crash)
    with pytest.raises(RuntimeError):
        engine.sync_pair(pair.id)
    monkeypatch.undo()
    copied_before = Chunk.objects.filter(vault=pair.target_vault).count()
    assert copied_before == Chunk.objects.filter(vault=source_vault).count()
    pair = engine.sync_pair(pair.id)
    copy = ReplicatedPoint.objects.get(pair=pair)
    assert copy.bytes_sent < 2000  # only the manifest this time
    assert files_of(copy.target_point) == files_of(point)


def test_a_damaged_source_chunk_is_not_copied(source_vault, backup, lrs_region):
    # rule R11: every chunk is checked (tag and id) before it is sealed for the target
    from vaults.dataplane.chunkstore import CorruptData
    from vaults.dataplane.objectstore import region_store
    from vaults.models import Pack

    backup(source_vault)
    pair = start(source_vault, lrs_region)
    store = region_store(source_vault.region)
    pack = Pack.objects.filter(vault=source_vault).first()
    data = bytearray(store.get(pack.key))
    data[100] ^= 0x01
    store.put(pack.key, bytes(data))
    with pytest.raises(CorruptData):
        engine.sync_pair(pair.id)
    assert not BackupPoint.objects.filter(vault=pair.target_vault).exists()


def test_a_point_of_many_packs_is_copied_pack_by_pack(source_vault, backup, lrs_region, tree, monkeypatch):
    # the copy plan groups the missing chunks into target packs of about PACK_TARGET bytes
    from vaults.models import Pack

    (tree / "more.bin").write_bytes(os.urandom(3_000_000))
    point = backup(source_vault)
    monkeypatch.setattr(engine, "PACK_TARGET", 256 * 1024)  # small packs, so that one point needs many
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    packs = list(Pack.objects.filter(vault=pair.target_vault).annotate(n=Count("chunks")).values_list("size", "n"))
    assert len(packs) >= 10
    # at most PACK_TARGET, but for a pack of one chunk: random data can be cut at the largest chunk size,
    # which sealed is a few bytes over 256 KiB
    assert all(size <= 256 * 1024 or chunks == 1 for size, chunks in packs), packs
    packs = [size for size, _ in packs]
    assert sum(packs) + ReplicatedPoint.objects.get(pair=pair).target_point.manifest_size == pair.bytes_sent
    assert files_of(ReplicatedPoint.objects.get(pair=pair).target_point) == files_of(point)
    assert verify_vault(pair.target_vault)["problems"] == []


def test_a_chunk_that_leaves_the_target_index_before_the_commit_fails_the_copy(source_vault, backup, lrs_region):
    # rule R11: the target point is committed only if every chunk it names is in the target's index
    point = backup(source_vault)
    pair = start(source_vault, lrs_region)
    copy_chunks = engine.copy_chunks

    def copy_then_lose_one(pair, *args):
        sent = copy_chunks(pair, *args)
        Chunk.objects.filter(vault=pair.target_vault).order_by("pk").first().delete()  # as a concurrent sweep would
        return sent

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "copy_chunks", copy_then_lose_one)
        with pytest.raises(RuntimeError, match="missing at the target"):
            engine.sync_pair(pair.id)
    assert not BackupPoint.objects.filter(vault=pair.target_vault).exists()
    assert ReplicatedPoint.objects.get(pair=pair).state == ReplicatedPoint.State.PENDING
    pair = engine.sync_pair(pair.id)  # the next sync copies the lost chunk again and commits
    assert files_of(ReplicatedPoint.objects.get(pair=pair).target_point) == files_of(point)


def test_reseal_checks_tag_and_id_and_seals_under_the_target_key():
    from types import SimpleNamespace

    from vaults.dataplane.chunkstore import ChunkCodec, CorruptData

    id_key = os.urandom(32)
    source = ChunkCodec(SimpleNamespace(data_key=os.urandom(32), chunk_id_key=id_key))
    target = ChunkCodec(SimpleNamespace(data_key=os.urandom(32), chunk_id_key=id_key))
    for data in (b"compressible text\n" * 4000, os.urandom(70_000)):
        cid = source.chunk_id(data)
        blob = source.seal_chunk(cid, data)
        out = bytearray(len(blob))
        source.reseal_chunk_into(target, cid, memoryview(blob), memoryview(out))
        assert bytes(out) != blob and target.open_chunk(cid, bytes(out)) == data
        with pytest.raises(CorruptData):
            source.open_chunk(cid, bytes(out))  # the source's key does not open it
        tampered = bytearray(blob)
        tampered[-1] ^= 1
        with pytest.raises(CorruptData, match="tag"):
            source.reseal_chunk_into(target, cid, memoryview(tampered), memoryview(out))
    forged = source.seal_chunk(cid, b"other content")  # a valid tag, but not the content the id names
    with pytest.raises(CorruptData, match="does not match"):
        source.reseal_chunk_into(target, cid, memoryview(forged), memoryview(bytearray(len(forged))))


def test_copy_threads_take_short_turns_on_the_gil_and_the_interval_comes_back(
    source_vault, backup, lrs_region, monkeypatch
):
    import sys

    seen = []
    copy_pack = engine._copy_pack

    def recording(*args):
        seen.append(sys.getswitchinterval())
        return copy_pack(*args)

    monkeypatch.setattr(engine, "_copy_pack", recording)
    before = sys.getswitchinterval()
    backup(source_vault)
    engine.sync_pair(start(source_vault, lrs_region).id)
    assert seen and max(seen) <= 0.0005 < before
    assert sys.getswitchinterval() == before


def test_a_stop_during_a_copy_ends_it_at_the_next_pack_and_takes_back_what_was_stored(
    source_vault, backup, lrs_region, tree, monkeypatch
):
    # rule R12: nothing new reaches the target after the stop, not even the packs of a copy in flight
    from vaults.models import Pack

    (tree / "more.bin").write_bytes(os.urandom(3_000_000))
    backup(source_vault)
    monkeypatch.setattr(engine, "PACK_TARGET", 256 * 1024)  # small packs, so that the copy has many
    pair = start(source_vault, lrs_region)
    real_index = engine.index_pack
    indexed = []

    def stop_after_the_first_pack(vault, key, size, rows):
        real_index(vault, key, size, rows)
        indexed.append(key)
        services.stop_replication(actor=None, pair=pair)

    monkeypatch.setattr(engine, "index_pack", stop_after_the_first_pack)
    with pytest.raises(engine.PairStopped):
        engine.sync_pair(pair.id)
    target = pair.target_vault
    stored = {k for k in _keys(target) if "/packs/" in k}
    assert len(indexed) == 1 and stored == set(Pack.objects.filter(vault=target).values_list("key", flat=True))
    assert stored == set(indexed) and not BackupPoint.objects.filter(vault=target).exists()


def test_target_copies_keep_their_source_retention_and_go_with_their_source(source_vault, backup, source, lrs_region):
    # rules R9, R12: while the pair runs a copy expires with its source point (whose retention it keeps);
    # once stopped, the target is standalone and "retain at least one version" does not apply to it
    from datetime import timedelta

    from django.utils import timezone

    source.retain_at_least_one = True
    source.save()
    point = backup(source_vault, retention_days=1)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    copy = ReplicatedPoint.objects.get(pair=pair).target_point
    assert copy.expires == point.expires
    later = timezone.now() + timedelta(days=3)
    vault_services.set_point_retention(actor=None, point=point, expires=later)
    copy.refresh_from_db()
    assert copy.expires == later
    # time passes: both expire (for real: the expiry reads the database's clock only)
    BackupPoint.objects.filter(pk__in=[point.pk, copy.pk]).update(expires=timezone.now() - timedelta(seconds=1))
    vault_services.expire_points()  # the source keeps its only point, and the copy goes with its source
    assert BackupPoint.objects.filter(pk=point.pk).exists() and BackupPoint.objects.filter(pk=copy.pk).exists()
    services.stop_replication(actor=None, pair=pair)
    vault_services.expire_points()
    assert BackupPoint.objects.filter(pk=point.pk).exists() and not BackupPoint.objects.filter(pk=copy.pk).exists()


def test_historical_points_that_leave_the_source_leave_the_total_visibly(
    alice, source_vault, backup, lrs_region, tree, monkeypatch
):
    # the progress neither waits for a point that is gone nor jumps to 100 % at the end: 3/5 -> 3/4 ...
    points = []
    for i in range(3):
        (tree / f"p{i}.txt").write_bytes(f"point {i}\n".encode() * 2000)
        points.append(backup(source_vault))
    pair = start(source_vault, lrs_region)
    original = engine.copy_point
    seen = []

    def copy_then_delete(pair, copy):
        result = original(pair, copy)
        if not seen:  # after the first point is copied, the last one is deleted at the source
            seen.append(vault_services.delete_point(actor=None, point=BackupPoint.objects.get(pk=points[-1].id)))
            mid = ReplicationPair.objects.get(pk=pair.pk)
            seen.append((mid.history_points_done, mid.history_points_total))
        return result

    monkeypatch.setattr(engine, "copy_point", copy_then_delete)
    pair = engine.sync_pair(pair.id)
    assert seen[1] == (1, 3)
    assert pair.state == ReplicationPair.State.RUNNING
    assert (pair.history_points_done, pair.history_points_total, pair.history_points_left) == (2, 2, 1)
    assert pair.history_bytes_total == pair.history_bytes_done == points[0].size + points[1].size
    ReplicationPair.objects.filter(pk=pair.pk).update(state=ReplicationPair.State.SYNCING)  # as while it ran
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert "2/2 points" in body and "1 point left the source before being copied" in body


def test_a_single_large_point_shows_progress_while_it_is_copied(
    alice, source_vault, backup, lrs_region, tree, monkeypatch
):
    # issue: "0 % · 0/1 points · 0 bytes" until the point lands. Its bytes count as its packs are stored.
    (tree / "large.bin").write_bytes(os.urandom(6 << 20))
    point = backup(source_vault)
    pair = start(source_vault, lrs_region)
    monkeypatch.setattr(engine, "PACK_TARGET", 256 << 10)  # target packs of 256 KiB: about 25 steps
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 0)  # every pack, so each step can be seen
    seen = []
    save = engine.PointProgress.save

    def save_and_look(progress, force=False):  # the real write, then what a user would see at that moment
        save(progress, force)
        mid = ReplicationPair.objects.get(pk=pair.pk)
        cell = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
        seen.append((mid.history_bytes_copied, mid.history_points_done, mid.history_percent, mid.history_rate, cell))

    monkeypatch.setattr(engine.PointProgress, "save", save_and_look)
    pair = engine.sync_pair(pair.id)

    copied = [s[0] for s in seen]
    assert len(seen) > 10 and copied == sorted(copied) and copied[0] < point.size // 10
    assert all(done == 0 for _, done, *_ in seen)  # all of it within the one point
    middle = seen[len(seen) // 2]
    assert 20 <= middle[2] <= 80 and middle[3] > 0
    assert f"{middle[2]}% · 0/1 points" in middle[4]
    assert pair.history_bytes_in_flight == 0 and pair.history_bytes_done == point.size and pair.history_percent == 100


def test_a_stopped_pair_whose_source_was_deleted_is_refused_not_crashed(source_vault, backup, lrs_region):
    # the stop of a pair whose source is gone (rule R13 allows that once stopped) says it is stopped already
    backup(source_vault)
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    services.stop_replication(actor=None, pair=pair, confirmation=source_vault.name)
    vault_services.delete_vault(actor=None, vault=source_vault, confirmation=source_vault.name)
    pair = ReplicationPair.objects.get(pk=pair.pk)
    assert pair.source_vault is None
    with pytest.raises(ValidationError, match="already stopped"):
        services.stop_replication(actor=None, pair=pair, confirmation="anything")
    refusal = AuditLog.objects.get(action="stop_replication", outcome="refused", object_id=pair.id)
    assert refusal.region_code == lrs_region.code  # audited where what is left of the pair lives


def test_a_pair_moves_only_along_its_allowed_transitions(source_vault, backup, lrs_region):
    pair = engine.sync_pair(start(source_vault, lrs_region).id)
    assert pair.state == ReplicationPair.State.RUNNING
    with transaction.atomic():
        locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
        with pytest.raises(ValidationError, match="cannot go from Running to Syncing history"):
            services.set_pair_state(locked, ReplicationPair.State.SYNCING)
    assert ReplicationPair.objects.get(pk=pair.pk).state == ReplicationPair.State.RUNNING
    assert list(ReplicationPair.objects.active()) == [pair]
    services.stop_replication(actor=None, pair=pair)
    assert list(ReplicationPair.objects.active()) == []
