"""Read queries for replication on vault pages: one batch per page, not one per row."""

from django.db.models import Min, Q

from vaults.models import BackupPoint, Tier

from .models import ReplicatedPoint, ReplicationPair
from .services import replication_refusal, vaults_with_ecs_instance_data


class VaultReplication:
    """What a vault's row and page show about replication."""

    def __init__(self, vault, pair=None, role=None, refusal=None):
        self.vault, self.pair, self.role, self.refusal = vault, pair, role, refusal

    @property
    def peer(self):
        if self.pair is None:
            return None
        return self.pair.target_vault if self.role == "source" else self.pair.source_vault

    @property
    def peer_label(self):
        return self.pair.target_label if self.role == "source" else self.pair.source_label

    @property
    def can_stop(self):
        return self.role == "source" and self.pair.is_active

    @property
    def is_moving(self):
        return self.pair is not None and self.pair.is_active and self.pair.is_moving


def replication_of(vaults):
    """{vault id: VaultReplication} for a page of vaults, in two queries."""
    ids = [v.id for v in vaults]
    pairs = list(
        ReplicationPair.objects.filter(Q(source_vault__in=ids) | Q(target_vault__in=ids))
        .select_related("source_vault__region", "target_vault__region")
        .order_by("-created")
    )
    _set_oldest_pending([p for p in pairs if p.is_active])
    with_ecs = vaults_with_ecs_instance_data(ids)
    result = {}
    for vault in vaults:
        mine = [p for p in pairs if vault.id in (p.source_vault_id, p.target_vault_id)]
        active = [p for p in mine if p.is_active]
        pair = (active or mine or [None])[0]
        role = None if pair is None else ("source" if pair.source_vault_id == vault.id else "target")
        replicated = any(p.source_vault_id == vault.id for p in active)
        refusal = replication_refusal(vault, replicated=replicated, has_ecs_instance_data=vault.id in with_ecs)
        result[vault.id] = VaultReplication(vault, pair, role, refusal)
    return result


def annotate_vaults(vaults):
    """`vault.rep` of each vault of a page (the Storage Vaults rows and the vault page show it)."""
    replication = replication_of(vaults)
    for vault in vaults:
        vault.rep = replication[vault.id]


def _set_oldest_pending(pairs):
    """The lag of every active pair of a page, in one query (see ReplicationPair.lag_seconds)."""
    if not pairs:
        return
    committed = ReplicatedPoint.objects.filter(pair__in=pairs, state=ReplicatedPoint.State.COMMITTED)
    oldest = dict(
        BackupPoint.objects.filter(vault__in=[p.source_vault_id for p in pairs], tier=Tier.STANDARD)
        .exclude(id__in=committed.values("source_point_id"))
        .values("vault")
        .annotate(oldest=Min("created"))
        .values_list("vault", "oldest")
    )
    for pair in pairs:
        pair.oldest_pending = oldest.get(pair.source_vault_id)
