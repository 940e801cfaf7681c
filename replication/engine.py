"""The copy engine: keep a replication target vault in step with its source.

`sync_pair` plans what the target lacks from the database (points not yet
copied; for each, the chunk ids the target's index does not hold), copies those
chunks (opened and checked under the source's key, sealed under the target's),
writes the manifest, and commits the target point in a transaction that first
re-checks under the pair's row lock that the pair still runs (rules R11, R12).
Running it again after a crash copies only what is still missing.
"""

import json
import logging
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from console.services import record_audit
from vaults.dataplane.backup import index_pack
from vaults.dataplane.chunkstore import PACK_TARGET, ChunkCodec, manifest_key, new_pack_name, pack_key, short_gil_turns
from vaults.dataplane.keys import vault_keys
from vaults.dataplane.objectstore import region_store
from vaults.models import BackupPoint, Chunk, Tier, VaultStatus, new_point_id
from vaults.services import (
    chunk_pks_of,
    collect_garbage,
    commit_replica_point,
    committing,
    forget_object,
    initialize_vault_storage,
    remove_point,
    retry_vault_initialization,
)

from . import lease
from .models import CrossRegionTraffic, ReplicatedPoint, ReplicationPair
from .services import clear_pair_error, set_pair_state

log = logging.getLogger(__name__)

# Target packs in flight at once: while one thread reseals, the others wait for the disk or the network.
COPY_THREADS = 3
PROGRESS_EVERY = 0.5  # seconds between writes of a point's copy progress (PointProgress)


class PairStopped(Exception):
    """The pair was stopped while a copy was in flight: nothing may reach the target."""


class TargetNotReady(Exception):
    pass


class RegionDisabled(TargetNotReady):
    """A region of the pair is disabled: the pair waits (and says why) until it is enabled again."""


def sync_pair(pair_id):
    """Bring the target up to date: history first, then any new point; remove what left the source.

    One sync of a pair runs at a time (replication/lease.py): a sync that finds another
    running leaves it one more round to do and returns at once.
    """
    if not lease.take(pair_id):
        return ReplicationPair.objects.get(pk=pair_id)
    try:
        pair = _sync_round(pair_id)
        while lease.release(pair_id):
            pair = _sync_round(pair_id)
    except BaseException:
        lease.drop(pair_id)
        raise
    return pair


def _sync_round(pair_id):
    pair = ReplicationPair.objects.select_related("source_vault__region", "target_vault__region").get(pk=pair_id)
    if not pair.is_active:
        return pair
    if reason := pair.stall_reason:
        raise RegionDisabled(reason)
    target = pair.target_vault
    if target.status == VaultStatus.ERROR:  # its storage could not be created: try again with every sync
        retry_vault_initialization(actor=None, vault=target)
        target.refresh_from_db()
    if target.status == VaultStatus.INITIALIZING:
        target = initialize_vault_storage(target.id) or target
        target.refresh_from_db()
    if target.status != VaultStatus.NORMAL:
        raise TargetNotReady(f"The target vault is {target.get_status_display()}: {target.status_reason}")
    _plan_history(pair)
    remove_replicas_of_departed_points(pair)
    _plan_new_points(pair)
    for copy in ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.PENDING).order_by(
        "source_created"
    ):
        copy_point(pair, copy)
    with transaction.atomic():
        locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
        if (
            locked.state == ReplicationPair.State.SYNCING
            and not locked.copies.filter(is_history=True, state=ReplicatedPoint.State.PENDING).exists()
        ):
            detail = {"points": locked.history_points_done, "bytes": locked.history_bytes_done}
            set_pair_state(
                locked,
                ReplicationPair.State.RUNNING,
                region_code=target.region.code,
                detail=detail,
                history_finished=timezone.now(),
            )
        clear_pair_error(locked)
    return locked


def _plan_history(pair):
    """Rule R8: the standard-tier points of the source at the start are the historical sync."""
    with transaction.atomic():
        locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
        if locked.state != ReplicationPair.State.INITIALIZING:
            return
        points = list(BackupPoint.objects.filter(vault=locked.source_vault_id, tier=Tier.STANDARD))
        ReplicatedPoint.objects.bulk_create(
            [
                ReplicatedPoint(
                    pair=locked,
                    source_point_id=p.id,
                    source_created=p.created,
                    source_committed=p.created,
                    is_history=True,
                    size=p.size,
                )
                for p in points
            ],
            ignore_conflicts=True,
        )
        set_pair_state(
            locked,
            ReplicationPair.State.SYNCING,
            history_points_total=len(points),
            history_bytes_total=sum(p.size for p in points),
            history_started=timezone.now(),
        )


def _plan_new_points(pair):
    """Standard points of the source that have no copy yet (the trigger's and the reconcile's work)."""
    known = ReplicatedPoint.objects.filter(pair=pair).values("source_point_id")
    new = BackupPoint.objects.filter(vault=pair.source_vault_id, tier=Tier.STANDARD).exclude(id__in=known)
    ReplicatedPoint.objects.bulk_create(
        [
            ReplicatedPoint(
                pair=pair, source_point_id=p.id, source_created=p.created, source_committed=p.created, size=p.size
            )
            for p in new
        ],
        ignore_conflicts=True,
    )


def copy_point(pair, copy):
    """Copy one source point to the target; commit it only once all its data is there."""
    source_point = BackupPoint.objects.filter(pk=copy.source_point_id, tier=Tier.STANDARD).first()
    if source_point is None:  # deleted, expired or archived at the source meanwhile (rules R9, R10)
        _leave_history(pair, copy)
        return None
    source, target = pair.source_vault, pair.target_vault
    source_store, target_store = region_store(source.region), region_store(target.region)
    source_codec, target_codec = ChunkCodec(vault_keys(source)), ChunkCodec(vault_keys(target))

    refs = list(
        Chunk.objects.filter(pointchunk__point=source_point).values_list(
            "chunk_id", "pack__key", "offset", "length", "raw_length"
        )
    )
    present = chunk_pks_of(target, [bytes(r[0]) for r in refs])
    missing = defaultdict(list)
    for cid, key, offset, length, raw_length in refs:
        if bytes(cid) not in present:
            missing[key].append((bytes(cid), offset, length, raw_length))
    progress = PointProgress(pair, source_point.size, refs, present) if copy.is_history else None
    sent = copy_chunks(pair, source_store, target_store, source_codec, target_codec, missing, progress)

    target_point_id = new_point_id()
    manifest = json.loads(source_codec.open_manifest(source_point.id, source_store.get(source_point.manifest_key)))
    manifest.update(point=target_point_id, vault=target.id, replicated_from=source_point.id)
    blob = target_codec.seal_manifest(target_point_id, json.dumps(manifest, separators=(",", ":")).encode())
    target_key = manifest_key(target, target_point_id)
    target_store.put(target_key, blob)
    count_traffic(pair, len(blob))
    sent += len(blob)
    with committing(target_store, target_key):
        return _commit_copy(pair, copy, source_point, target_point_id, target_key, len(blob), len(refs), sent)


class PointProgress:
    """How far the copy of one historical point has got, shown while it runs (not only once it lands).

    The point's size is shared out over its chunks by their raw length: chunks the target
    already holds count at once, the others as their packs are stored. Written to the pair
    at most every PROGRESS_EVERY seconds; the commit adds the whole size and clears it.
    """

    def __init__(self, pair, size, refs, present):
        self.pair_id, self.size = pair.pk, size
        self.raw_total = sum(r[4] for r in refs) or 1
        self.raw_done = sum(r[4] for r in refs if bytes(r[0]) in present)
        self.written_at = 0.0
        self.save(force=True)

    def add(self, rows):
        self.raw_done += sum(row[3] for row in rows)
        self.save()

    def save(self, force=False):
        now = time.monotonic()
        if not force and now - self.written_at < PROGRESS_EVERY:
            return
        self.written_at = now
        in_flight = self.size * min(self.raw_done, self.raw_total) // self.raw_total
        ReplicationPair.objects.filter(pk=self.pair_id).update(history_bytes_in_flight=in_flight)


def _leave_history(pair, copy):
    """A point that left the source before it was copied is no longer to copy: a historical one leaves the
    totals too, and is counted as having left, so the progress neither waits for it nor jumps at the end."""
    with transaction.atomic():
        removed = ReplicatedPoint.objects.filter(pk=copy.pk, state=ReplicatedPoint.State.PENDING).update(
            state=ReplicatedPoint.State.REMOVED
        )
        if removed and copy.is_history:
            ReplicationPair.objects.filter(pk=pair.pk).update(
                history_points_total=F("history_points_total") - 1,
                history_bytes_total=F("history_bytes_total") - copy.size,
                history_points_left=F("history_points_left") + 1,
                history_bytes_in_flight=0,
            )


def count_traffic(pair, size):
    """Rule B1: bytes count as sent between regions once they are in the target store and recorded there (a
    pack indexed, a manifest written), committed into a point or not. A pack a killed worker stored but did
    not record is sent again and counted once: the service's crash is not the account's traffic."""
    with transaction.atomic():
        ReplicationPair.objects.filter(pk=pair.pk).update(
            bytes_sent=F("bytes_sent") + size,
            sync_heartbeat=timezone.now(),  # the lease's sign of life
        )
        traffic, _ = CrossRegionTraffic.objects.get_or_create(
            pair_id=pair.pk, day=timezone.now().date(), defaults={"region_id": pair.source_vault.region_id}
        )
        CrossRegionTraffic.objects.filter(pk=traffic.pk).update(bytes_sent=F("bytes_sent") + size)


def copy_chunks(pair, source_store, target_store, source_codec, target_codec, missing, progress=None):
    """Copy the chunks the target lacks ({source pack key: [(id, offset, length, size)]}); return bytes sent.

    Each new target pack is read, resealed and written on a pool thread (one reseals while
    another waits for the disk or the network); this thread indexes the packs in order as
    they are stored, so a crash leaves at worst a stored pack nobody references. A stop
    ends the copy at the next pack, and the packs stored since are taken back (rule R12).
    """
    target = pair.target_vault
    sent = 0
    with short_gil_turns(), ThreadPoolExecutor(COPY_THREADS) as pool:
        inflight = deque()

        def index_next():
            key, size, rows = inflight.popleft().result()
            try:
                indexed = _index_pack(pair, key, size, rows)
            except PairStopped:
                forget_object(target_store, key)
                raise
            if progress is not None:
                progress.add(rows)
            return indexed

        try:
            for groups in _plan_packs(missing):
                inflight.append(
                    pool.submit(_copy_pack, target, source_store, target_store, source_codec, target_codec, groups)
                )
                if len(inflight) >= COPY_THREADS:
                    sent += index_next()
            while inflight:
                sent += index_next()
        except PairStopped:
            for future in inflight:  # packs stored after the stop are taken back too
                if not future.cancel() and future.exception() is None:
                    forget_object(target_store, future.result()[0])
            raise
        except BaseException:
            for future in inflight:
                future.cancel()
            raise
    return sent


def _plan_packs(missing):
    """Group the missing chunks into target packs of about PACK_TARGET bytes: [[(source pack, chunks)]].

    Chunks keep their order in the source pack, so each group is one ranged read.
    """
    packs, current, size = [], [], 0
    for key in sorted(missing):
        for chunk in sorted(missing[key], key=lambda c: c[1]):
            if size and size + chunk[2] > PACK_TARGET:
                packs.append(current)
                current, size = [], 0
            if not current or current[-1][0] != key:
                current.append((key, []))
            current[-1][1].append(chunk)
            size += chunk[2]
    if current:
        packs.append(current)
    return packs


def _copy_pack(target, source_store, target_store, source_codec, target_codec, groups):
    """One target pack: read the chunks, check and reseal each in place, store the pack (a pool thread)."""
    total = sum(c[2] for _, chunks in groups for c in chunks)
    pack = bytearray(total)
    out = memoryview(pack)
    rows, position = [], 0
    for key, chunks in groups:
        start = chunks[0][1]
        data = memoryview(source_store.get_range(key, start, chunks[-1][1] + chunks[-1][2] - start))
        for cid, offset, length, raw_length in chunks:
            blob = data[offset - start : offset - start + length]
            source_codec.reseal_chunk_into(target_codec, cid, blob, out[position : position + length])
            rows.append((cid, position, length, raw_length))
            position += length
    key = pack_key(target, new_pack_name())
    target_store.put(key, pack)
    return key, total, rows


def _index_pack(pair, key, size, rows):
    """Make a stored target pack's chunks known to the target's index, and count its traffic (rule B1).

    Only while the pair runs (the pair's row lock orders this against a stop, rule R12).
    """
    with transaction.atomic():
        pairs = ReplicationPair.objects.select_for_update()
        if not pairs.active().filter(pk=pair.pk).exists():
            raise PairStopped(f"{pair.id} was stopped; the copy ends.")
        index_pack(pair.target_vault, key, size, rows)
        count_traffic(pair, size)
    return size


def _commit_copy(pair, copy, source_point, target_point_id, target_key, manifest_size, chunks, sent):
    """Rule R12: the target point appears only if the pair still runs at this instant."""
    target = pair.target_vault
    with transaction.atomic():
        locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
        if not locked.is_active:
            raise PairStopped(f"{pair.id} was stopped; {source_point.id} is not copied.")
        row = ReplicatedPoint.objects.select_for_update().get(pk=copy.pk)
        if row.state != ReplicatedPoint.State.PENDING:
            raise PairStopped(f"{source_point.id} was handled meanwhile.")
        point = commit_replica_point(
            source_point=source_point,
            vault=target,
            point_id=target_point_id,
            manifest_key=target_key,
            manifest_size=manifest_size,
            stored_bytes=sent,
            chunks=chunks,
        )
        now = timezone.now()
        row.state, row.target_point, row.committed, row.bytes_sent = ReplicatedPoint.State.COMMITTED, point, now, sent
        row.save(update_fields=["state", "target_point", "committed", "bytes_sent"])
        updates = {}
        if row.is_history:
            updates["history_points_done"] = F("history_points_done") + 1
            updates["history_bytes_done"] = F("history_bytes_done") + source_point.size
            updates["history_bytes_in_flight"] = 0
        if locked.last_replicated is None or source_point.created > locked.last_replicated:
            updates["last_replicated"] = source_point.created
        if updates:
            ReplicationPair.objects.filter(pk=pair.pk).update(**updates)
        record_audit(
            actor=None,
            action="replicate_point",
            object_type="backup_point",
            object_id=point.id,
            account=locked.account,
            region_code=target.region.code,
            source_point=source_point.id,
            pair=pair.id,
            bytes_sent=sent,
        )
    return point


def remove_replicas_of_departed_points(pair):
    """Rules R9, R10: a point deleted, expired or archived at the source goes at the target too."""
    standard = BackupPoint.objects.filter(vault=pair.source_vault_id, tier=Tier.STANDARD).values("id")
    departed = ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED).exclude(
        source_point_id__in=standard
    )
    removed = 0
    for copy in departed.select_related("target_point"):
        with transaction.atomic():
            locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
            if not locked.is_active:
                return removed  # a standalone target keeps its points (rule R12)
            if copy.target_point is not None:
                point_id = copy.target_point.id
                remove_point(copy.target_point)
                record_audit(
                    actor=None,
                    action="remove_replica",
                    object_type="backup_point",
                    object_id=point_id,
                    account=locked.account,
                    region_code=pair.target_vault.region.code,
                    source_point=copy.source_point_id,
                )
            ReplicatedPoint.objects.filter(pk=copy.pk).update(state=ReplicatedPoint.State.REMOVED)
            removed += 1
    if removed:
        collect_garbage(pair.target_vault_id)
    return removed
