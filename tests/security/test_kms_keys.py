"""Rule T2 for KMS keys: no vault of one account is ever created with another account's key, by any path.

The rule lives in vaults.services.create_vault; each path below reaches it (or refuses earlier,
when its form or lookup only knows the account's own keys). Account A is "acme" (owner of the
keys), account B "globex" (who tries).
"""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from console.models import AuditLog
from console.services import add_member
from replication import services as replication_services
from replication.models import ReplicationPair
from tests.conftest import make_user
from vaults import services
from vaults.models import EncryptionMethod, Vault

HTMX = {"HTTP_HX_REQUEST": "true"}
KMS, CBM = EncryptionMethod.KMS, EncryptionMethod.CLOUD_BACKUP_MANAGED


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)
    monkeypatch.setattr("replication.services.enqueue_sync", lambda pair_id: None)


@pytest.fixture
def their_keys(account, region, lrs_region):
    """Account A's keys in both regions."""
    return {
        r.code: services.create_kms_key(actor=None, account=account, region=r, alias=f"acme-{r.code}")
        for r in (region, lrs_region)
    }


@pytest.fixture
def their_key(their_keys, region):
    return their_keys[region.code]


@pytest.fixture
def mallory(client, other_user):
    client.force_login(other_user)
    return client


def nothing_created_with(*keys):
    """No vault holds the keys but their owner's, and no audit row of another account names them."""
    for key in keys:
        assert not Vault.objects.filter(kms_key=key).exclude(account=key.account).exists()
        for row in AuditLog.objects.exclude(account=key.account).exclude(outcome=AuditLog.Outcome.REFUSED):
            assert key.key_id not in str(row.detail), row


def run(*args):
    call_command(*args, stdout=StringIO())


# -- the service: the one place ----------------------------------------------------------------------


@pytest.mark.parametrize("method", [KMS, CBM])
def test_create_vault_refuses_another_accounts_key(other_account, region, their_key, method):
    # with Cloud Backup-managed encryption the key is not silently dropped either: naming it is refused
    with pytest.raises(ValidationError) as refused:
        services.create_vault(
            actor=None, account=other_account, region=region, name="x", encryption_method=method, kms_key=their_key
        )
    assert "kms_key" in refused.value.message_dict
    assert not Vault.objects.exists()
    nothing_created_with(their_key)
    assert AuditLog.objects.get(action="create_vault").outcome == AuditLog.Outcome.REFUSED


def test_create_vault_takes_the_accounts_own_key(account, region, their_key):
    vault = services.create_vault(
        actor=None, account=account, region=region, name="x", encryption_method=KMS, kms_key=their_key
    )
    assert vault.kms_key == their_key
    assert AuditLog.objects.get(action="create_vault").detail["kms_key"] == their_key.key_id


# -- the console's Create vault dialog ------------------------------------------------------------------


@pytest.mark.parametrize("method", [KMS, CBM])
@pytest.mark.parametrize("headers", [{}, HTMX])
def test_console_create_vault_form(mallory, other_account, their_key, method, headers):
    group = other_account.resource_groups.get()
    response = mallory.post(
        "/regions/cn-hangzhou/vaults/create/",
        {
            "name": "stolen",
            "resource_group": group.pk,
            "vault_type": "general",
            "encryption_method": method,
            "kms_key": their_key.key_id,
        },
        **headers,
    )
    assert response.status_code == 422
    assert their_key.key_id not in response.content.decode().replace(f'value="{their_key.key_id}"', "")
    assert not Vault.objects.exists()
    nothing_created_with(their_key)


def test_console_kms_key_field_lists_only_the_accounts_keys(mallory, their_key):
    body = mallory.get("/regions/cn-hangzhou/vaults/kms-key-field/?encryption_method=kms", **HTMX).content.decode()
    assert their_key.key_id not in body and their_key.alias not in body


# -- the admin's add form ---------------------------------------------------------------------------------


def admin_add(client, account, region, key, method):
    return client.post(
        "/admin/vaults/vault/add/",
        {
            "account": account.pk,
            "region": region.pk,
            "name": "stolen",
            "description": "",
            "resource_group": account.resource_groups.get().pk,
            "vault_type": "general",
            "encryption_method": method,
            "kms_key": key.pk,
        },
    )


@pytest.mark.parametrize("method", [KMS, CBM])
def test_admin_superuser_cannot_give_a_vault_another_accounts_key(client, other_account, region, their_key, method):
    # a superuser sees every account's keys in the select: the service refuses the mix
    client.force_login(make_user("root", staff=True, superuser=True))
    response = admin_add(client, other_account, region, their_key, method)
    assert response.status_code == 200
    assert "The KMS key must belong to this account" in response.content.decode()
    assert not Vault.objects.exists()
    nothing_created_with(their_key)


@pytest.mark.parametrize("method", [KMS, CBM])
def test_admin_staff_of_one_account_cannot_name_another_accounts_key(client, other_account, region, their_key, method):
    staff = make_user("operator", staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["vaults", "console"]))
    add_member(actor=None, account=other_account, user=staff)
    client.force_login(staff)
    response = admin_add(client, other_account, region, their_key, method)
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert not Vault.objects.exists()
    nothing_created_with(their_key)


# -- manage.py vault create --kms-key ------------------------------------------------------------------------


@pytest.mark.parametrize("method", [KMS, CBM])
def test_vault_create_command(other_account, their_key, method):
    args = ["--account", "globex", "--region", "cn-hangzhou", "--name", "stolen", "--encryption", method]
    with pytest.raises(CommandError, match="kms_key"):
        run("vault", "create", *args, "--kms-key", their_key.key_id)
    assert not Vault.objects.exists()
    nothing_created_with(their_key)


# -- the replication panel's Create Replication Target Vault, and manage.py replication start ------------


@pytest.fixture
def kms_source(other_account, region):
    """Account B's KMS-encrypted vault in Normal state, ready to replicate."""
    key = services.create_kms_key(actor=None, account=other_account, region=region, alias="globex-hz")
    vault = services.create_vault(
        actor=None, account=other_account, region=region, name="b-source", encryption_method=KMS, kms_key=key
    )
    return services.initialize_vault_storage(vault.id)


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_replication_panel_create_target(mallory, other_account, kms_source, their_keys, headers):
    key = their_keys["us-west-1"]
    response = mallory.post(
        f"/regions/cn-hangzhou/vaults/{kms_source.id}/replication/",
        {
            "mode": "create",
            "destination_region": "us-west-1",
            "name": "stolen",
            "resource_group": other_account.resource_groups.get().pk,
            "encryption_method": KMS,
            "kms_key": key.key_id,
        },
        **headers,
    )
    assert response.status_code == 422
    assert not ReplicationPair.objects.exists() and Vault.objects.count() == 1
    nothing_created_with(*their_keys.values())


def test_replication_start_command_create_target(kms_source, their_keys):
    key = their_keys["us-west-1"]
    with pytest.raises(CommandError, match="kms_key"):
        run(
            "replication",
            "start",
            "--source",
            kms_source.id,
            "--region",
            "us-west-1",
            "--create-name",
            "stolen",
            "--kms-key",
            key.key_id,
        )
    assert not ReplicationPair.objects.exists() and Vault.objects.count() == 1
    nothing_created_with(*their_keys.values())


def test_start_replication_service_create_target(kms_source, their_keys, lrs_region):
    # what both paths above call: refused in create_vault, and the pair goes with it
    with pytest.raises(ValidationError):
        replication_services.start_replication(
            actor=None,
            source_vault=kms_source,
            destination_region=lrs_region,
            create={"name": "stolen", "encryption_method": KMS, "kms_key": their_keys["us-west-1"]},
        )
    assert not ReplicationPair.objects.exists() and Vault.objects.count() == 1
    nothing_created_with(*their_keys.values())
