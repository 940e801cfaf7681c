"""Garbage collection: points removed, chunks no point needs deleted, sparse packs rewritten, orphan objects
swept. Never while a backup of the vault runs or another app's work needs its chunks (hooks.GC_GUARDS)."""

import logging
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from console import jobs
from console.models import JobStatus

from ..dataplane.chunkstore import PACK_TARGET, new_pack_name, pack_key
from ..dataplane.objectstore import ObjectStoreError, region_store
from ..models import BackupJob, BackupPoint, Chunk, Pack, Tier, Vault
from .hooks import GC_GUARDS, POINT_REMOVED
from .storage import refresh_data_size

log = logging.getLogger(__name__)


def forget_object(store, key):
    """Take back an object stored for a commit that did not happen; if that fails, the orphan sweep removes it."""
    try:
        store.delete(key)
    except Exception:
        log.warning("Could not remove %s after a failed commit; the orphan sweep will", key)


@contextmanager
def committing(store, key):
    """transaction.atomic() for the commit of an object stored before it (a point's manifest): unless the
    transaction commits, the object is taken back; once it has, the object stays, even if an on_commit hook
    fails after it (a stopping worker raises SystemExit there), since a committed point needs it."""
    committed = []
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))  # the first hook: before any that may fail
            yield
    except BaseException:
        if not committed:
            forget_object(store, key)
        raise


def remove_point(point):
    """The point's rows go now; its manifest object and unneeded chunks go with garbage collection."""
    Pack.objects.get_or_create(
        vault=point.vault, key=point.manifest_key, defaults={"size": point.manifest_size, "is_garbage": True}
    )
    point_id, vault_id = point.id, point.vault_id
    point.delete()
    for listener in POINT_REMOVED:
        transaction.on_commit(lambda listener=listener: listener(point_id, vault_id))


def collect_garbage(vault_id):
    """Delete chunks no point references, rewrite packs that became sparse, then delete empty pack objects.

    Skipped while a backup of the vault is running, so a chunk a running job has
    just reused is never deleted (backups start under the same row lock), and while a
    GC_GUARDS hook says so (a replication copying into the vault).
    """
    with transaction.atomic():
        vault = Vault.objects.select_for_update().select_related("region").filter(pk=vault_id).first()
        if vault is None:
            return None
        if jobs.active(BackupJob.objects.filter(vault=vault, status=JobStatus.RUNNING)).exists():
            return None
        if any(guard(vault) for guard in GC_GUARDS):
            return None
        dead = Chunk.objects.filter(vault=vault, pointchunk__isnull=True)
        dead_count = dead.count()
        Chunk.objects.filter(pk__in=dead.values("pk")).delete()
    repacked = repack_sparse_packs(vault)
    with transaction.atomic():
        Pack.objects.filter(vault=vault, is_garbage=False, chunks__isnull=True).exclude(
            key__contains="/manifests/"
        ).update(is_garbage=True)
        doomed = list(Pack.objects.filter(vault=vault, is_garbage=True).values_list("pk", "key"))
    store = region_store(vault.region)
    removed = []
    for pk, key in doomed:
        try:
            store.delete(key)
        except ObjectStoreError:
            log.warning("Could not delete %s; the next collection retries", key)
            continue
        removed.append(pk)
    Pack.objects.filter(pk__in=removed).delete()
    refresh_data_size(vault)
    return {
        "chunks": dead_count,
        "repacked": repacked,
        "objects": len(removed),
        "orphans": sweep_orphans(vault, store),
    }


# Older than this, an object no row names is an orphan: a worker writes a pack's or a manifest's row
# seconds after the object, so only a worker that died in between leaves one.
ORPHAN_AGE = timedelta(hours=1)


def sweep_orphans(vault, store):
    """Delete the vault's stored objects that no row names (packs, archive packs, manifests, torn writes).

    A worker killed after an upload and before its index row leaves such an object:
    never read, but it takes space and Storage Vault Data Size does not count it.
    """
    known = set(Pack.objects.filter(vault=vault).values_list("key", flat=True))
    known.update(BackupPoint.objects.filter(vault=vault).values_list("manifest_key", flat=True))
    cutoff = timezone.now() - ORPHAN_AGE
    swept = 0
    try:
        for area in ("packs/", "archive/", "manifests/"):
            for key, modified in store.list_objects(vault.storage_prefix + area):
                if key not in known and modified < cutoff:
                    store.delete(key)
                    swept += 1
    except ObjectStoreError as exc:
        log.warning("Sweeping %s stopped, the next collection goes on: %s", vault.id, exc)
    if swept:
        log.info("Removed %s orphan objects of %s", swept, vault.id)
    return swept


REPACK_BELOW = 0.5  # a pack whose live chunks fill less than this is rewritten by garbage collection


def rewrite_chunks(vault, chunks, *, tier):
    """Copy chunks (still sealed) into new packs of a tier and point the index at them.

    The old packs keep their copies until garbage collection finds them unneeded;
    so a crash in between loses nothing, it only leaves space to reclaim.
    """
    store = region_store(vault.region)
    archive = tier == Tier.ARCHIVE
    by_pack = defaultdict(list)
    for chunk in chunks.select_related("pack"):
        by_pack[chunk.pack].append(chunk)
    buf, placed = bytearray(), []

    def flush():
        if not placed:
            return
        key = pack_key(vault, new_pack_name(), archive=archive)
        store.put(key, bytes(buf), archive=archive)
        pack = Pack.objects.create(vault=vault, key=key, size=len(buf), tier=tier)
        for chunk, offset in placed:
            Chunk.objects.filter(pk=chunk.pk).update(pack=pack, offset=offset)
        buf.clear()
        placed.clear()

    for pack, members in by_pack.items():
        data = store.get(pack.key)
        for chunk in members:
            placed.append((chunk, len(buf)))
            buf += data[chunk.offset : chunk.offset + chunk.length]
            if len(buf) >= PACK_TARGET:
                flush()
    flush()


def repack_sparse_packs(vault):
    """Rewrite packs mostly made of deleted chunks, so the vault's size shrinks to what is needed."""
    sparse = (
        Pack.objects.filter(vault=vault, is_garbage=False)
        .exclude(key__contains="/manifests/")
        .annotate(live=Sum("chunks__length"), n=Count("chunks"))
        .filter(n__gt=0)
    )
    rewritten = 0
    for pack in sparse:
        if pack.live < pack.size * REPACK_BELOW:
            rewrite_chunks(vault, Chunk.objects.filter(pack=pack), tier=pack.tier)
            rewritten += 1
    if rewritten:
        refresh_data_size(vault)
    return rewritten
