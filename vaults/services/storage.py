"""Storage accounting: which chunks a vault holds, its Storage Vault Data Size (rule V6) and the daily peak
it is billed on (rule B1)."""

from django.db.models import Sum
from django.utils import timezone

from ..models import BackupPoint, Chunk, Pack, StorageUsage, Vault


def chunk_pks_of(vault, chunk_ids, batch=1000):
    """{chunk id: row id} of the given ids that the vault holds, in batches."""
    ids = list(chunk_ids)
    found = {}
    for i in range(0, len(ids), batch):
        rows = Chunk.objects.filter(vault=vault, chunk_id__in=ids[i : i + batch]).values_list("chunk_id", "pk")
        found.update((bytes(cid), pk) for cid, pk in rows)
    return found


def refresh_data_size(vault):
    """Rule V6: the bytes the vault occupies in its store (packs after dedup, plus manifests)."""
    packs = Pack.objects.filter(vault=vault).aggregate(n=Sum("size"))["n"] or 0
    manifests = BackupPoint.objects.filter(vault=vault).aggregate(n=Sum("manifest_size"))["n"] or 0
    Vault.objects.filter(pk=vault.pk).update(data_size=packs + manifests)
    note_storage_usage(vault, packs + manifests)


def note_storage_usage(vault, size):
    """Rule B1: storage is billed on each day's largest Storage Vault Data Size of the vault."""
    row, created = StorageUsage.objects.get_or_create(
        vault_id=vault.pk,
        day=timezone.now().date(),
        defaults={
            "vault_label": f"{vault.name} ({vault.pk})",
            "account_id": vault.account_id,
            "region_id": vault.region_id,
            "peak_bytes": size,
        },
    )
    if not created:
        StorageUsage.objects.filter(pk=row.pk, peak_bytes__lt=size).update(peak_bytes=size)


def note_storage_usage_of_all_vaults():
    """Every vault's size counts each day, also on days nothing changes it (the hourly task)."""
    for vault in Vault.objects.only("pk", "name", "account_id", "region_id", "data_size").iterator():
        note_storage_usage(vault, vault.data_size)
