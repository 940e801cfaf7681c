"""A vault being read by a restore, or written by a backup, is not deleted or collected under the job (V7)."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from restore import services
from restore.models import RestoreJob
from tests.restore.conftest import KiB, make_target, random_bytes, write
from vaults import services as vault_services
from vaults.models import BackupJob, Chunk, SourceType


@pytest.fixture
def point(tmp_path, point_of):
    write(tmp_path / "src" / "a.bin", random_bytes(200 * KiB, 91))
    return point_of("general", SourceType.ON_PREMISES_FILE, path=tmp_path / "src")


def test_a_vault_is_not_deleted_under_a_restore_and_not_collected_while_one_reads_it(tmp_path, account, point):
    point, region = point
    vault = point.vault
    (tmp_path / "dest").mkdir()
    job = services.start_restore(
        actor=None, point=point, target=make_target(account, region, "local-server", tmp_path / "dest")
    )
    with pytest.raises(ValidationError, match="restore job from this vault"):
        vault_services.delete_vault(actor=None, vault=vault, confirmation=vault.name)

    # a running restore read the index before the point was deleted by hand: its packs stay until it ends
    RestoreJob.objects.filter(pk=job.pk).update(status=RestoreJob.Status.RUNNING, heartbeat=timezone.now())
    vault_services.delete_point(actor=None, point=point)
    assert vault_services.collect_garbage(vault.id) is None
    assert Chunk.objects.filter(vault=vault).exists()
    RestoreJob.objects.filter(pk=job.pk).update(status=RestoreJob.Status.SUCCEEDED)
    vault_services.collect_garbage(vault.id)
    assert not Chunk.objects.filter(vault=vault).exists()
    vault_services.delete_vault(actor=None, vault=vault, confirmation=vault.name)


def test_a_vault_is_not_deleted_under_a_backup(tmp_path, account, point):
    point, region = point
    vault = point.vault
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="nas", name="nas", path=str(tmp_path / "src")
    )
    job = vault_services.start_backup(actor=None, vault=vault, source=source)
    with pytest.raises(ValidationError, match="backup job of this vault"):
        vault_services.delete_vault(actor=None, vault=vault, confirmation=vault.name)
    vault_services.run_backup_job(job.pk)
    assert BackupJob.objects.get(pk=job.pk).status == BackupJob.Status.SUCCEEDED
    vault_services.delete_vault(actor=None, vault=vault, confirmation=vault.name)
