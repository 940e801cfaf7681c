"""The admin goes through the same services: it cannot break a vault rule either."""

from decimal import Decimal

import pytest

from console.models import AuditLog, Region
from tests.conftest import make_user
from vaults import services
from vaults.dataplane import objectstore
from vaults.models import Vault


@pytest.fixture
def admin_client(client, db):
    client.force_login(make_user("root", staff=True, superuser=True))
    return client


def add_vault(client, **fields):
    data = {"vault_type": "general", "encryption_method": "cloud-backup-managed", "description": "", **fields}
    return client.post("/admin/vaults/vault/add/", data)


def test_admin_creates_a_vault_through_the_service(admin_client, account, region):
    group = account.resource_groups.get()
    response = add_vault(admin_client, account=account.pk, region=region.pk, name="ops", resource_group=group.pk)
    assert response.status_code == 302, response.content.decode()[:2000]
    vault = Vault.objects.get(name="ops")
    assert vault.redundancy == "ZRS" and bytes(vault.wrapped_data_key)
    assert AuditLog.objects.filter(action="create_vault", object_id=vault.id, actor_name="root").exists()


def test_admin_refuses_a_kms_key_of_another_region(admin_client, account, region, lrs_region):
    # rule V4
    key = services.create_kms_key(actor=None, account=account, region=lrs_region, alias="west")
    group = account.resource_groups.get()
    response = add_vault(
        admin_client,
        account=account.pk,
        region=region.pk,
        name="bad",
        resource_group=group.pk,
        encryption_method="kms",
        kms_key=key.pk,
    )
    assert response.status_code == 200
    assert "The KMS key must belong to this account in China (Hangzhou)." in response.content.decode()
    assert not Vault.objects.exists()


def test_admin_cannot_change_the_key_or_type_of_a_vault(admin_client, make_vault, account, region):
    # rule V4: the key cannot be changed afterwards
    first = services.create_kms_key(actor=None, account=account, region=region, alias="first")
    second = services.create_kms_key(actor=None, account=account, region=region, alias="second")
    vault = make_vault("keyed", encryption_method="kms", kms_key=first)
    response = admin_client.post(
        f"/admin/vaults/vault/{vault.id}/change/",
        {
            "name": "renamed",
            "description": "",
            "resource_group": vault.resource_group_id,
            "kms_key": second.pk,
            "encryption_method": "cloud-backup-managed",
            "vault_type": "archive",
        },
    )
    assert response.status_code == 302
    vault.refresh_from_db()
    assert vault.name == "renamed"
    assert (vault.kms_key, vault.encryption_method, vault.vault_type) == (first, "kms", "general")


def test_admin_delete_removes_the_data(admin_client, make_vault, region, django_capture_on_commit_callbacks):
    # rule V7: the admin's confirmation page is the explicit confirmation
    vault = make_vault("gone")
    services.initialize_vault_storage(vault.id)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(f"/admin/vaults/vault/{vault.id}/delete/", {"post": "yes"}).status_code == 302
    assert not Vault.objects.filter(pk=vault.pk).exists()
    assert objectstore.region_store(region).list_keys(vault.storage_prefix) == []


def test_admin_cannot_delete_a_locked_vault(admin_client, make_vault):
    vault = make_vault("locked")
    services.enable_backup_lock(actor=None, vault=vault)
    assert admin_client.get(f"/admin/vaults/vault/{vault.id}/delete/").status_code == 403
    assert Vault.objects.filter(pk=vault.pk).exists()


def test_admin_adds_disables_and_repoints_a_region(admin_client, tmp_path):
    # rule G2: operators add, disable and re-point regions
    response = admin_client.post(
        "/admin/console/region/add/",
        {
            "code": "eu-north-9",
            "name": "Nowhere (North)",
            "supports_cross_region": "on",
            "is_enabled": "on",
            "position": 500,
            "store_backend": "local",
            "store_location": str(tmp_path / "north"),
            "store_endpoint_url": "",
            "storage_price": "0.02",
            "replication_price": "0.05",
            "internet_price": "0.09",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    region = Region.objects.get(code="eu-north-9")
    assert region.redundancy == "LRS"
    assert objectstore.store_config(region)[1] == str(tmp_path / "north")
    change = admin_client.post(
        f"/admin/console/region/{region.pk}/change/",
        {
            "code": "eu-north-9",
            "name": "Nowhere (North)",
            "supports_cross_region": "on",
            "position": 500,
            "store_backend": "local",
            "store_location": str(tmp_path / "elsewhere"),
            "store_endpoint_url": "",
            "storage_price": "0.0185",
            "replication_price": "0.05",
            "internet_price": "0.09",
        },
    )
    assert change.status_code == 302
    region.refresh_from_db()
    assert not region.is_enabled and region.store_location == str(tmp_path / "elsewhere")
    assert region.storage_price == Decimal("0.0185")  # rule B3: prices are configuration, per region
    update = AuditLog.objects.get(object_id="eu-north-9", action="update_region")
    assert update.detail["changed"]["storage_price"] == "0.0185"
    assert list(AuditLog.objects.filter(object_id="eu-north-9").values_list("action", flat=True)) == [
        "update_region",
        "add_region",
    ]


def test_admin_audit_log_is_read_only(admin_client, make_vault):
    make_vault("audited")
    row = AuditLog.objects.get(action="create_vault")
    assert admin_client.get(f"/admin/console/auditlog/{row.pk}/change/").status_code == 200
    admin_client.post(f"/admin/console/auditlog/{row.pk}/change/", {"action": "x"})
    admin_client.post(f"/admin/console/auditlog/{row.pk}/delete/", {"post": "yes"})
    row.refresh_from_db()
    assert row.action == "create_vault"
