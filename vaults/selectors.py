"""Read queries for vault pages, always scoped to an account (rule A1)."""

from django.http import Http404

from .models import BackupJob, BackupPoint, BackupSource, KmsKey, OssBucket, Vault


def vaults_of(account, region=None):
    rows = Vault.objects.filter(account=account).select_related("region", "kms_key", "resource_group")
    if region is not None:
        rows = rows.filter(region=region)
    return rows


def vault_or_404(account, vault_id, region=None):
    """Another account's vault is a 404, exactly like one that does not exist."""
    vault = vaults_of(account, region).filter(pk=vault_id).first()
    if vault is None:
        raise Http404("No such vault.")
    return vault


def kms_keys_of(account, region):
    return KmsKey.objects.filter(account=account, region=region)


def points_of(vault):
    return BackupPoint.objects.filter(vault=vault)


def point_or_404(vault, point_id):
    point = points_of(vault).filter(pk=point_id).select_related("source", "vault__region", "vault__account").first()
    if point is None:
        raise Http404("No such backup point.")
    return point


def sources_of(account, region):
    return BackupSource.objects.filter(account=account, region=region)


def buckets_of(account, region):
    """The OSS buckets an account may name in a region (rule T2)."""
    return OssBucket.objects.filter(account=account, region=region)


def source_or_404(account, region, source_id):
    source = sources_of(account, region).filter(pk=source_id).first()
    if source is None:
        raise Http404("No such backup source.")
    return source


def jobs_of(account, region):
    return BackupJob.objects.filter(account=account, vault__region=region).select_related("vault", "source", "point")
