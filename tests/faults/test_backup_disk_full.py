"""A region store that runs out of space mid-backup: a clear failed job and no half point (rule P3).

A full disk cannot be caused portably here, so the store's write fails with ENOSPC from the
third pack on (a wrapper around the real local store: the first packs are really written).
"""

import errno
import os

from vaults import services
from vaults.dataplane import objectstore
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint


def test_disk_full_fails_the_job_cleanly_and_the_next_run_completes(monkeypatch, make_vault, account, region, tmp_path):
    vault = services.initialize_vault_storage(make_vault("full").id)
    tree = tmp_path / "data"
    tree.mkdir()
    for i in range(4):
        (tree / f"blob-{i}.bin").write_bytes(os.urandom(12 << 20))
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="nas", name="nas", path=str(tree)
    )
    real_put = objectstore.LocalRegionStore.put
    writes = []

    def put(self, key, data, archive=False):
        """What LocalRegionStore.put raises when os.write fails with ENOSPC."""
        writes.append(key)
        if len(writes) > 2:
            raise objectstore.ObjectStoreError(f"Cannot write {key} to {self}: {os.strerror(errno.ENOSPC)}")
        return real_put(self, key, data, archive)

    monkeypatch.setattr(objectstore.LocalRegionStore, "put", put)
    job = services.start_backup(actor=None, vault=vault, source=source)
    assert services.run_backup_job(job.pk) is None
    job.refresh_from_db()
    assert job.status == BackupJob.Status.FAILED
    assert "No space left on device" in job.error
    assert not BackupPoint.objects.exists()

    monkeypatch.setattr(objectstore.LocalRegionStore, "put", real_put)
    point = services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    assert point is not None and point.size == 4 * (12 << 20)
    assert verify_vault(vault)["problems"] == []
