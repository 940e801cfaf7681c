"""The whole flow on both storage backends and both key providers: back up, replicate, compare."""

import pytest

from replication import engine, services
from tests.replication.conftest import create_target
from vaults import services as vault_services
from vaults.dataplane import keys
from vaults.dataplane.objectstore import region_store, store_config
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import BackupPoint, EncryptionMethod


def contents(point):
    reader = PointReader(point)
    return {e["path"]: b"".join(reader.iter_file(e)) for e in reader.manifest()["entries"] if e["type"] == "file"}


@pytest.mark.parametrize("storage", ["local", "s3"])
@pytest.mark.parametrize("provider", ["cloud-backup-managed", "aws-kms"])
def test_replicate_between_regions(
    request, storage, provider, make_vault, account, region, lrs_region, backup, settings
):
    # rules R5, R8, R11 on each backend
    if storage == "s3":
        request.getfixturevalue("s3_stores")  # each region is its own bucket on the loopback S3 server
    create = create_target()
    kwargs = {}
    if provider == "aws-kms":
        request.getfixturevalue("aws_kms")
        settings.KMS = {**settings.KMS, "signing_region": "us-east-1"}  # moto knows AWS region names only
        keys._kms_client.cache_clear()
        east = vault_services.create_kms_key(actor=None, account=account, region=region, alias="east")
        west = vault_services.create_kms_key(actor=None, account=account, region=lrs_region, alias="west")
        kwargs = {"encryption_method": EncryptionMethod.KMS, "kms_key": east}
        create.update(encryption_method=EncryptionMethod.KMS, kms_key=west)
    source_vault = vault_services.initialize_vault_storage(make_vault("src", **kwargs).id)
    point = backup(source_vault)
    pair = services.start_replication(
        actor=None, source_vault=source_vault, destination_region=lrs_region, create=create
    )
    pair = engine.sync_pair(pair.id)
    target = pair.target_vault
    replica = BackupPoint.objects.get(vault=target)
    assert contents(replica) == contents(point)
    assert verify_vault(target)["problems"] == []
    assert store_config(region)[1] != store_config(lrs_region)[1]  # two buckets or directories
    target_keys = region_store(lrs_region).list_keys(target.storage_prefix)
    assert any("/packs/" in k for k in target_keys) and any("/manifests/" in k for k in target_keys)
    if provider == "aws-kms":
        assert target.kms_key.key_id == create["kms_key"].key_id
