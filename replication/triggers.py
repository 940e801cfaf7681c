"""What a change at a source vault sets off: a sync of its running pair (rules R8-R10)."""

from vaults.models import BackupPoint

from .models import ReplicatedPoint, ReplicationPair
from .services import enqueue_sync


def _sync_pairs_of(vault_id):
    for pair_id in ReplicationPair.objects.active().filter(source_vault=vault_id).values_list("pk", flat=True):
        enqueue_sync(pair_id)


def point_committed(point):
    _sync_pairs_of(point.vault_id)


def point_removed(point_id, vault_id):
    _sync_pairs_of(vault_id)


def point_archived(point):
    _sync_pairs_of(point.vault_id)


def retention_changed(point):
    """Rule R9: the copies of a source point keep its retention (and keep it once the pair stops, R12)."""
    copies = ReplicatedPoint.objects.filter(
        source_point_id=point.id, pair__state__in=ReplicationPair.ACTIVE_STATES, target_point__isnull=False
    ).values("target_point")
    BackupPoint.objects.filter(pk__in=copies).update(expires=point.expires)
