"""create_vault and update_vault: every rule checked by the service, whatever the path."""

import pytest
from django.core.exceptions import ValidationError

from console.models import AuditLog, ResourceGroup
from vaults import services
from vaults.models import EncryptionMethod, Vault, VaultStatus, VaultType


def test_new_vault_starts_initializing_with_system_chosen_redundancy(make_vault, region, lrs_region):
    # rule V3: ZRS where the region supports it, LRS elsewhere
    zrs = make_vault("in-zrs-region")
    lrs = make_vault("in-lrs-region", reg=lrs_region)
    assert (zrs.redundancy, lrs.redundancy) == ("ZRS", "LRS")
    assert zrs.status == VaultStatus.INITIALIZING
    assert zrs.resource_group == ResourceGroup.objects.get(account=zrs.account, is_default=True)  # rule A2


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Enter a vault name"), ("   ", "Enter a vault name"), ("x" * 65, "at most 64"), ("bad\x07name", "control")],
)
def test_bad_names_are_refused_and_change_nothing(make_vault, name, message):
    with pytest.raises(ValidationError) as exc:
        make_vault(name)
    assert message in exc.value.message_dict["name"][0]
    assert not Vault.objects.exists()


def test_duplicate_name_in_a_region_is_refused_but_allowed_in_another_region(make_vault, lrs_region):
    make_vault("payroll")
    with pytest.raises(ValidationError) as exc:
        make_vault("payroll")
    assert "already exists" in exc.value.message_dict["name"][0]
    assert make_vault("payroll", reg=lrs_region).region == lrs_region
    assert Vault.objects.filter(name="payroll").count() == 2


def test_disabled_region_is_refused(make_vault, region):
    region.is_enabled = False
    region.save()
    with pytest.raises(ValidationError) as exc:
        make_vault("nope")
    assert "disabled" in exc.value.message_dict["region"][0]


def test_resource_group_of_another_account_is_refused(make_vault, other_account):
    # rule A1/A2
    foreign = ResourceGroup.objects.get(account=other_account, is_default=True)
    with pytest.raises(ValidationError) as exc:
        make_vault("rg", resource_group=foreign)
    assert "resource_group" in exc.value.message_dict


def test_kms_needs_a_key_of_the_same_account_and_region(make_vault, account, other_account, region, lrs_region):
    # rule V4: a KMS KeyId from the vault's own region (and account)
    with pytest.raises(ValidationError) as exc:
        make_vault("no-key", encryption_method=EncryptionMethod.KMS)
    assert "kms_key" in exc.value.message_dict
    elsewhere = services.create_kms_key(actor=None, account=account, region=lrs_region, alias="west")
    foreign = services.create_kms_key(actor=None, account=other_account, region=region, alias="theirs")
    for key in (elsewhere, foreign):
        with pytest.raises(ValidationError) as exc:
            make_vault("wrong-key", encryption_method=EncryptionMethod.KMS, kms_key=key)
        assert "kms_key" in exc.value.message_dict
    assert not Vault.objects.exists()
    good = services.create_kms_key(actor=None, account=account, region=region, alias="east")
    vault = make_vault("right-key", encryption_method=EncryptionMethod.KMS, kms_key=good)
    assert vault.kms_key == good


def test_cloud_backup_managed_ignores_a_stray_key(make_vault, account, region):
    key = services.create_kms_key(actor=None, account=account, region=region, alias="k")
    vault = make_vault("cbm", kms_key=key)
    assert vault.encryption_method == EncryptionMethod.CLOUD_BACKUP_MANAGED
    assert vault.kms_key is None


def test_unknown_type_is_refused(make_vault):
    with pytest.raises(ValidationError) as exc:
        make_vault("t", vault_type="tape")
    assert "vault_type" in exc.value.message_dict


def test_every_vault_type_of_rule_v1_can_be_created(make_vault):
    for vault_type in VaultType.values:
        assert make_vault(f"type-{vault_type}", vault_type=vault_type).vault_type == vault_type


def test_creation_and_refusal_are_audited(make_vault, account):
    # rule A3
    vault = make_vault("audited")
    with pytest.raises(ValidationError):
        make_vault("audited")
    rows = list(AuditLog.objects.filter(account=account, action="create_vault").order_by("id"))
    assert [(r.outcome, r.object_id) for r in rows] == [("success", vault.id), ("refused", "")]
    assert "already exists" in rows[1].detail["reason"]


def test_update_changes_name_and_description_only(make_vault, account, region):
    key = services.create_kms_key(actor=None, account=account, region=region, alias="k")
    vault = make_vault("before", encryption_method=EncryptionMethod.KMS, kms_key=key)
    wrapped = bytes(vault.wrapped_data_key)
    updated = services.update_vault(actor=None, vault=vault, name="after", description="new words")
    updated.refresh_from_db()
    assert (updated.name, updated.description) == ("after", "new words")
    assert updated.kms_key == key and bytes(updated.wrapped_data_key) == wrapped


def test_audit_log_is_append_only(make_vault):
    # rule A3
    row = AuditLog.objects.first()
    row.action = "tampered"
    with pytest.raises(PermissionError):
        row.save()
    with pytest.raises(PermissionError):
        row.delete()
