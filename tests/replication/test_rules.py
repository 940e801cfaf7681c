"""Starting replication: rules R1-R5 and R7, with a clear error and no half state."""

import pytest
from django.core.exceptions import ValidationError

from console.models import AuditLog, Region
from replication import services
from replication.models import ReplicationPair
from tests.replication.conftest import create_target
from vaults import services as vault_services
from vaults.models import BackupPoint, EncryptionMethod, Vault, VaultType


def start(source_vault, region, **kwargs):
    kwargs.setdefault("create", create_target())
    return services.start_replication(actor=None, source_vault=source_vault, destination_region=region, **kwargs)


def no_half_state(before_vaults):
    assert not ReplicationPair.objects.exists()
    assert Vault.objects.count() == before_vaults


@pytest.mark.parametrize("vault_type", [t for t in VaultType.values if t != VaultType.GENERAL])
def test_only_general_backup_vaults_can_be_sources(make_vault, lrs_region, vault_type):
    # rule R1
    vault = vault_services.initialize_vault_storage(make_vault("v", vault_type=vault_type).id)
    assert services.replication_refusal(vault)
    with pytest.raises(ValidationError, match="cannot be replicated"):
        start(vault, lrs_region)
    no_half_state(1)


def test_error_and_initializing_vaults_cannot_be_sources(make_vault, lrs_region):
    # rules R1, V2
    vault = make_vault("v")
    assert "Normal" in services.replication_refusal(vault)
    Vault.objects.filter(pk=vault.pk).update(status="error")
    vault.refresh_from_db()
    with pytest.raises(ValidationError, match="Error state"):
        start(vault, lrs_region)


def test_destination_must_be_another_region_with_cross_region_support(source_vault, region, lrs_region):
    # rules R2, R6
    with pytest.raises(ValidationError) as exc:
        start(source_vault, region)
    assert "must differ" in exc.value.message_dict["destination_region"][0]
    Region.objects.filter(pk=lrs_region.pk).update(supports_cross_region=False)
    lrs_region.refresh_from_db()
    with pytest.raises(ValidationError, match="does not support cross-region"):
        start(source_vault, lrs_region)
    assert lrs_region not in services.destination_regions(source_vault)
    assert region not in services.destination_regions(source_vault)
    no_half_state(1)


def test_one_target_per_source(source_vault, lrs_region):
    # rule R3
    start(source_vault, lrs_region)
    with pytest.raises(ValidationError, match="at most one replication target"):
        start(source_vault, lrs_region, create=create_target("second"))
    assert ReplicationPair.objects.count() == 1


def test_at_most_five_replication_target_vaults_per_region(source_vault, make_vault, lrs_region):
    # rule R4: counting the one being created
    for i in range(5):
        make_vault(f"rt-{i}", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET)
    with pytest.raises(ValidationError, match="at most 5"):
        start(source_vault, lrs_region)
    no_half_state(6)
    assert AuditLog.objects.filter(action="start_replication", outcome="refused").exists()


def test_selected_target_must_be_a_free_replication_target_of_the_account(
    source_vault, make_vault, other_account, lrs_region, region
):
    # rule R2
    general = vault_services.initialize_vault_storage(make_vault("gen", reg=lrs_region).id)
    theirs = vault_services.initialize_vault_storage(
        make_vault("theirs", acct=other_account, reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    same_region = vault_services.initialize_vault_storage(
        make_vault("here", vault_type=VaultType.REPLICATION_TARGET).id
    )
    for target, message in [
        (general, "must be a Replication Target"),
        (theirs, "of this account"),
        (same_region, "not in US"),
    ]:
        with pytest.raises(ValidationError, match=message):
            services.start_replication(
                actor=None, source_vault=source_vault, destination_region=lrs_region, target_vault=target
            )
    assert not ReplicationPair.objects.exists()
    free = vault_services.initialize_vault_storage(
        make_vault("free", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    assert list(services.free_target_vaults(source_vault.account, lrs_region, "cloud-backup-managed")) == [free]
    pair = services.start_replication(
        actor=None, source_vault=source_vault, destination_region=lrs_region, target_vault=free
    )
    assert pair.target_vault == free
    assert free not in services.free_target_vaults(source_vault.account, lrs_region)


def test_encryption_must_match(source_vault, account, lrs_region, make_vault, region):
    # rule R5
    with pytest.raises(ValidationError) as exc:
        start(source_vault, lrs_region, create={**create_target(), "encryption_method": "kms"})
    assert "must match" in exc.value.message_dict["encryption_method"][0]
    key = vault_services.create_kms_key(actor=None, account=account, region=region, alias="src")
    kms_source = vault_services.initialize_vault_storage(
        make_vault("kms-src", encryption_method=EncryptionMethod.KMS, kms_key=key).id
    )
    with pytest.raises(ValidationError) as exc:
        start(kms_source, lrs_region, create={**create_target(), "encryption_method": "kms"})
    assert "kms_key" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:  # a key of the source's region is not one of the destination
        start(kms_source, lrs_region, create={**create_target(), "encryption_method": "kms", "kms_key": key})
    assert "kms_key" in exc.value.message_dict
    west = vault_services.create_kms_key(actor=None, account=account, region=lrs_region, alias="west")
    pair = start(kms_source, lrs_region, create={**create_target(), "encryption_method": "kms", "kms_key": west})
    assert pair.target_vault.kms_key == west and pair.target_vault.encryption_method == "kms"


def test_ecs_instance_data_replicates_only_through_a_policy(source_vault, account, region, lrs_region, tmp_path):
    # rule R7
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "image").write_bytes(b"disk")
    ecs = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-instance", name="vm", path=str(tmp_path / "disk")
    )
    vault_services.run_backup_job(vault_services.start_backup(actor=None, vault=source_vault, source=ecs).pk)
    assert BackupPoint.objects.filter(source_type="ecs-instance").exists()
    with pytest.raises(ValidationError, match="backup policy"):
        start(source_vault, lrs_region)


def test_a_vault_with_an_ecs_instance_backup_on_its_way_is_not_replicated(
    source_vault, account, region, lrs_region, tmp_path
):
    # rule R7: a queued ECS instance backup would commit its point after the pair started
    (tmp_path / "disk").mkdir()
    ecs = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-instance", name="vm", path=str(tmp_path / "disk")
    )
    vault_services.start_backup(actor=None, vault=source_vault, source=ecs)
    assert "backup policy" in services.replication_refusal(source_vault)
    with pytest.raises(ValidationError, match="backup policy"):
        start(source_vault, lrs_region)
    assert not ReplicationPair.objects.exists()


def test_a_replicated_vault_takes_no_ecs_instance_backup(source_vault, account, region, lrs_region, tmp_path):
    # rule R7 the other way round: its points would reach the target through the vault route
    (tmp_path / "disk").mkdir()
    ecs = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-instance", name="vm", path=str(tmp_path / "disk")
    )
    start(source_vault, lrs_region)
    with pytest.raises(ValidationError, match="only through a backup policy"):
        vault_services.start_backup(actor=None, vault=source_vault, source=ecs)
    assert not BackupPoint.objects.exists()
    assert AuditLog.objects.filter(action="start_backup", outcome="refused").exists()


def test_a_sixth_replication_target_vault_is_refused_on_every_path_that_creates_vaults(
    make_vault, lrs_region, account, alice
):
    # rule R4 holds where vaults are created (console dialog, admin, `vault create`), not only in the panel
    from django.core.management import CommandError, call_command

    for i in range(5):
        make_vault(f"rt-{i}", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET)
    with pytest.raises(ValidationError, match="at most 5 are allowed"):
        make_vault("rt-5", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET)
    with pytest.raises(CommandError, match="at most 5 are allowed"):
        call_command(
            "vault", "create", "--account", account.slug, "--region", lrs_region.code, "--name", "rt-6",
            "--type", "replication-target",
        )  # fmt: skip
    assert Vault.objects.filter(vault_type=VaultType.REPLICATION_TARGET).count() == 5
    assert AuditLog.objects.filter(action="create_vault", outcome="refused").count() == 2
    make_vault("general-is-fine", reg=lrs_region)


def test_a_locked_or_standalone_vault_cannot_become_a_target(source_vault, make_vault, lrs_region):
    # rules L1, R12: a locked vault's points could not follow the source; a stopped pair never resumes
    locked = vault_services.initialize_vault_storage(
        make_vault("locked", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    vault_services.enable_backup_lock(actor=None, vault=locked, confirmation=locked.name)
    pair = start(source_vault, lrs_region)
    services.stop_replication(actor=None, pair=pair)
    standalone = vault_services.initialize_vault_storage(pair.target_vault_id)
    assert list(services.free_target_vaults(source_vault.account, lrs_region)) == []
    for target, message in [(locked, "has a backup lock"), (standalone, "cannot be resumed")]:
        with pytest.raises(ValidationError, match=message):
            services.start_replication(
                actor=None, source_vault=source_vault, destination_region=lrs_region, target_vault=target
            )
    assert ReplicationPair.objects.count() == 1


def test_a_target_follows_its_source_lifecycle_until_it_is_standalone(alice, source_vault, make_vault, lrs_region):
    # seed: a standalone vault is managed independently (rule R12): automatic archiving is refused, and not
    # offered on the vault page, while the pair runs; after the stop it can be set
    pair = start(source_vault, lrs_region)
    target = vault_services.initialize_vault_storage(pair.target_vault_id)
    page = f"/regions/us-west-1/vaults/{target.id}/"
    body = alice.get(page).content.decode()
    assert "follows its source" in body and 'name="archive_after_days"' not in body
    with pytest.raises(ValidationError, match="follows its source's lifecycle"):
        vault_services.set_archive_after_days(actor=None, vault=target, days=30)
    free = vault_services.initialize_vault_storage(
        make_vault("free", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    assert vault_services.archiving_refusal(free) is not None  # a free target will follow its future source

    services.stop_replication(actor=None, pair=pair)
    assert 'name="archive_after_days"' in alice.get(page).content.decode()
    vault_services.set_archive_after_days(actor=None, vault=target, days=30)
    assert Vault.objects.get(pk=target.pk).archive_after_days == 30
