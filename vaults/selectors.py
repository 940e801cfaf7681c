"""Read queries for vault pages, always scoped to an account (rule A1)."""

from django.http import Http404

from .models import KmsKey, Vault


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
