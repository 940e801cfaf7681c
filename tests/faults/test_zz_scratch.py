import time

import pytest

from tests.conftest import wait_until
from vaults.models import Vault, VaultStatus


@pytest.mark.worker
def test_startup(celery_worker_process, make_vault):
    for i in range(4):
        celery_worker_process.kill()
        t = time.monotonic()
        celery_worker_process.start()
        v = make_vault(f"v{i}")
        assert wait_until(lambda: Vault.objects.get(pk=v.pk).status == VaultStatus.NORMAL, timeout=60, interval=0.01)
        print("startup to first task done", time.monotonic() - t)
