"""A real Celery worker process turns a new vault's storage area into existence."""

import pytest

from tests.conftest import wait_until
from vaults.dataplane import objectstore
from vaults.models import Vault, VaultStatus


@pytest.mark.worker
def test_worker_initializes_vault_storage(celery_worker_process, make_vault, region):
    # rule V2: Initializing -> Normal once the storage area exists, done by the worker process
    vault = make_vault("worker-made")
    assert vault.status == VaultStatus.INITIALIZING
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status != VaultStatus.INITIALIZING, timeout=60)
    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL, vault.status_reason
    store = objectstore.region_store(region)
    assert store.list_keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]
