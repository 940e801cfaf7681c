"""Read queries for replication on vault pages: one batch per page, not one per row."""

from django.db.models import Q

from vaults.models import BackupPoint, SourceType

from .models import ReplicationPair
from .services import replication_refusal


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
    with_ecs = set(
        BackupPoint.objects.filter(vault__in=ids, source_type=SourceType.ECS_INSTANCE)
        .values_list("vault", flat=True)
        .distinct()
    )
    result = {}
    for vault in vaults:
        mine = [p for p in pairs if vault.id in (p.source_vault_id, p.target_vault_id)]
        active = [p for p in mine if p.is_active]
        pair = (active or mine or [None])[0]
        role = None if pair is None else ("source" if pair.source_vault_id == vault.id else "target")
        replicated = any(p.source_vault_id == vault.id for p in active)
        refusal = replication_refusal(vault, replicated=replicated, has_ecs_instance_points=vault.id in with_ecs)
        result[vault.id] = VaultReplication(vault, pair, role, refusal)
    return result
