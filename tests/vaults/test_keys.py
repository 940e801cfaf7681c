"""Key providers (rule V4): every vault has its own random data key, stored only wrapped.

Cloud Backup-managed keys are wrapped under a per-region service key derived from a master secret
kept in a file outside the database; KMS keys are wrapped by the built-in key service ("local")
or by a KMS API through boto3 ("aws", here moto's KMS server as a real HTTP process).
"""

import base64
import inspect
import os
import stat
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.exceptions import ValidationError
from django.db import connection

from console.models import AuditLog, Region
from tests.conftest import free_port, make_user
from vaults import services
from vaults.dataplane import keys
from vaults.dataplane.keys import DATA_KEY_BYTES, KeyProviderError, unwrap_data_key
from vaults.models import EncryptionMethod, KmsKey, Vault, VaultStatus

AES_GCM_OVERHEAD = 12 + 16  # nonce + tag


def as_bytes(value):
    if value is None:
        return b""
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value)
    return str(value).encode()


def encodings(secret):
    """The ways a secret could be written down in a column."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
    ]


def vault_row(vault_id):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(Vault._meta.db_table)} WHERE id = %s", [vault_id])
        return cursor.fetchone()


def whole_database():
    """Every value of every row of every table, as bytes."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                cells.extend(as_bytes(value) for value in row)
    return cells


def assert_nowhere(secret, cells):
    for cell in cells:
        for form in encodings(secret):
            assert form not in cell, "a key is stored in the database"


def kms_client(settings, region_code):
    return boto3.client(
        "kms",
        region_name=region_code,
        endpoint_url=settings.KMS["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def refusals(account, action):
    return list(AuditLog.objects.filter(account=account, action=action, outcome=AuditLog.Outcome.REFUSED))


# -- Cloud Backup-managed -----------------------------------------------------------------


def test_managed_vault_stores_only_a_wrapped_key(make_vault, region):
    # rule V4: the default is Cloud Backup-managed; the row holds the wrapped key, never the data key
    vault = make_vault("managed")
    vault = Vault.objects.get(pk=vault.pk)
    assert vault.encryption_method == EncryptionMethod.CLOUD_BACKUP_MANAGED
    assert vault.kms_key_id is None
    wrapped = bytes(vault.wrapped_data_key)
    assert len(wrapped) == DATA_KEY_BYTES + AES_GCM_OVERHEAD

    data_key = unwrap_data_key(vault)
    assert isinstance(data_key, bytes) and len(data_key) == DATA_KEY_BYTES
    assert data_key not in wrapped
    row = vault_row(vault.id)
    assert row is not None
    assert_nowhere(data_key, [as_bytes(value) for value in row])
    # nor in the audit trail of the creation
    audit = [as_bytes(r.detail) for r in AuditLog.objects.filter(object_id=vault.id)]
    assert audit
    assert_nowhere(data_key, audit)


def test_each_vault_gets_its_own_data_key(make_vault, lrs_region):
    # rule V4: a random data key per vault (same region and across regions)
    a, b, c = make_vault("a"), make_vault("b"), make_vault("c", reg=lrs_region)
    data_keys = [unwrap_data_key(Vault.objects.get(pk=v.pk)) for v in (a, b, c)]
    assert len(set(data_keys)) == 3
    assert len({bytes(Vault.objects.get(pk=v.pk).wrapped_data_key) for v in (a, b, c)}) == 3


def test_master_secret_lives_in_a_file_outside_the_database(settings, make_vault, region, lrs_region):
    # rule V4: the service holds the keys; the master secret and the derived service keys are not in the DB
    vault = make_vault("managed")
    path = settings.MASTER_SECRET_FILE
    assert path.is_file()
    secret = path.read_bytes()
    assert len(secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data_key = unwrap_data_key(Vault.objects.get(pk=vault.pk))
    cells = whole_database()
    for key in (secret, keys.service_key(region.code), keys.service_key(lrs_region.code), data_key):
        assert_nowhere(key, cells)
    # the per-region service keys differ
    assert keys.service_key(region.code) != keys.service_key(lrs_region.code)


def test_a_different_master_secret_cannot_unwrap(settings, tmp_path, make_vault):
    # rule V4: the wrapped key is useless without the service's master secret
    vault = Vault.objects.get(pk=make_vault("managed").pk)
    original = unwrap_data_key(vault)

    settings.MASTER_SECRET_FILE = tmp_path / "other-secrets" / "master.key"  # a fresh, different secret
    with pytest.raises(KeyProviderError):
        unwrap_data_key(vault)
    settings.MASTER_SECRET = os.urandom(32).hex()  # a configured secret takes precedence; also wrong
    with pytest.raises(KeyProviderError):
        unwrap_data_key(vault)

    settings.MASTER_SECRET = ""
    settings.MASTER_SECRET_FILE = tmp_path / "secrets" / "master.key"
    assert unwrap_data_key(vault) == original


@pytest.mark.parametrize("position", [0, 12, 30, -1])
def test_tampered_wrapped_key_does_not_open(make_vault, position):
    # rule V4: the wrapped key is authenticated; a flipped bit anywhere (nonce, body, tag) is detected
    vault = make_vault("managed")
    wrapped = bytearray(Vault.objects.get(pk=vault.pk).wrapped_data_key)
    wrapped[position] ^= 0x01
    Vault.objects.filter(pk=vault.pk).update(wrapped_data_key=bytes(wrapped))
    with pytest.raises(KeyProviderError):
        unwrap_data_key(Vault.objects.get(pk=vault.pk))


@pytest.mark.parametrize("length", [0, 5, 12, 40])
def test_truncated_wrapped_key_does_not_open(make_vault, length):
    # rule V4: a cut-short (corrupted) wrapped key is refused by the key provider like any tampering,
    # with KeyProviderError (what callers handle), not a stray exception from the cipher library
    vault = make_vault("managed")
    wrapped = bytes(Vault.objects.get(pk=vault.pk).wrapped_data_key)
    Vault.objects.filter(pk=vault.pk).update(wrapped_data_key=wrapped[:length])
    with pytest.raises(KeyProviderError):
        unwrap_data_key(Vault.objects.get(pk=vault.pk))


def test_wrapped_key_is_bound_to_its_vault(make_vault, lrs_region):
    # rule V4: a wrapped key copied onto another vault (same or other region) does not open there
    a = Vault.objects.get(pk=make_vault("a").pk)
    for other in (make_vault("b"), make_vault("c", reg=lrs_region)):
        Vault.objects.filter(pk=other.pk).update(wrapped_data_key=bytes(a.wrapped_data_key))
        with pytest.raises(KeyProviderError):
            unwrap_data_key(Vault.objects.get(pk=other.pk))
    assert len(unwrap_data_key(a)) == DATA_KEY_BYTES


# -- KMS, both providers --------------------------------------------------------------------


@pytest.fixture(params=["local", "aws"])
def kms_backend(request):
    """The KMS provider of the test; "aws" is moto's KMS server reached through boto3."""
    if request.param == "aws":
        request.getfixturevalue("aws_kms")
    return request.param


@pytest.fixture
def kms_region(kms_backend, db):
    # moto's KMS serves AWS region names only, so the boto3 provider is exercised in us-west-1 (a region
    # code the product shares with AWS); the built-in service in cn-hangzhou
    return Region.objects.get(code="us-west-1" if kms_backend == "aws" else "cn-hangzhou")


@pytest.fixture
def second_region(kms_backend, db):
    return Region.objects.get(code="us-east-1" if kms_backend == "aws" else "us-west-1")


def test_kms_round_trip(settings, kms_backend, account, kms_region):
    # rule V4: KMS encryption with a KeyId of the vault's own region wraps the data key through that key
    key = services.create_kms_key(actor=None, account=account, region=kms_region, alias="backup-key")
    assert key.provider == kms_backend
    assert KmsKey.objects.filter(pk=key.pk, key_id=key.key_id, region=kms_region, account=account).exists()

    vault = services.create_vault(
        actor=None,
        account=account,
        region=kms_region,
        name="kms-vault",
        encryption_method=EncryptionMethod.KMS,
        kms_key=key,
    )
    vault = Vault.objects.get(pk=vault.pk)
    assert vault.encryption_method == EncryptionMethod.KMS
    assert vault.kms_key_id == key.pk
    assert vault.status == VaultStatus.INITIALIZING
    data_key = unwrap_data_key(vault)
    assert isinstance(data_key, bytes) and len(data_key) == DATA_KEY_BYTES
    assert_nowhere(data_key, [as_bytes(value) for value in vault_row(vault.id)])
    # a second vault under the same key still gets its own data key
    other = services.create_vault(
        actor=None,
        account=account,
        region=kms_region,
        name="kms-2",
        encryption_method=EncryptionMethod.KMS,
        kms_key=key,
    )
    assert unwrap_data_key(Vault.objects.get(pk=other.pk)) != data_key
    # the service-managed key cannot open a KMS-wrapped key
    with pytest.raises(KeyProviderError):
        keys._open(keys.service_key(kms_region.code), bytes(vault.wrapped_data_key), vault.id.encode())

    if kms_backend == "local":
        key_file = settings.KMS["local_root"] + f"/{kms_region.code}/{key.key_id}.key"
        master = open(key_file, "rb").read()
        assert len(master) == 32
        assert len(bytes(vault.wrapped_data_key)) == DATA_KEY_BYTES + AES_GCM_OVERHEAD
        assert_nowhere(master, whole_database())
    else:
        # the blob really is a moto KMS ciphertext, bound to the vault id as encryption context
        client = kms_client(settings, kms_region.code)
        plain = client.decrypt(CiphertextBlob=bytes(vault.wrapped_data_key), EncryptionContext={"vault": vault.id})
        assert plain["Plaintext"] == data_key
        assert plain["KeyId"].endswith(key.key_id)


def test_kms_tampered_wrapped_key_does_not_open(kms_backend, account, kms_region):
    # rule V4: a changed KMS-wrapped key is refused by the key service
    key = services.create_kms_key(actor=None, account=account, region=kms_region, alias="k")
    vault = services.create_vault(
        actor=None, account=account, region=kms_region, name="kv", encryption_method=EncryptionMethod.KMS, kms_key=key
    )
    wrapped = bytearray(Vault.objects.get(pk=vault.pk).wrapped_data_key)
    wrapped[-1] ^= 0x01
    Vault.objects.filter(pk=vault.pk).update(wrapped_data_key=bytes(wrapped))
    with pytest.raises(KeyProviderError):
        unwrap_data_key(Vault.objects.get(pk=vault.pk))


def test_kms_key_of_another_region_is_refused(kms_backend, account, kms_region, second_region):
    # rule V4 (and R5): the KMS KeyId must be one of the vault's own region
    foreign = services.create_kms_key(actor=None, account=account, region=second_region, alias="elsewhere")
    before = Vault.objects.count()
    with pytest.raises(ValidationError) as excinfo:
        services.create_vault(
            actor=None,
            account=account,
            region=kms_region,
            name="wrong-region",
            encryption_method=EncryptionMethod.KMS,
            kms_key=foreign,
        )
    assert "kms_key" in excinfo.value.message_dict
    assert Vault.objects.count() == before
    assert not Vault.objects.filter(name="wrong-region").exists()
    rows = refusals(account, "create_vault")
    assert len(rows) == 1
    assert rows[0].region_code == kms_region.code
    assert "KMS key" in rows[0].detail["reason"]


def test_kms_key_of_another_account_is_refused(kms_backend, account, other_account, kms_region):
    # rule V4 / A1: another account's key (even in the right region) is refused
    theirs = services.create_kms_key(actor=None, account=other_account, region=kms_region, alias="theirs")
    before = Vault.objects.count()
    with pytest.raises(ValidationError) as excinfo:
        services.create_vault(
            actor=None,
            account=account,
            region=kms_region,
            name="stolen-key",
            encryption_method=EncryptionMethod.KMS,
            kms_key=theirs,
        )
    assert "kms_key" in excinfo.value.message_dict
    assert Vault.objects.count() == before
    assert len(refusals(account, "create_vault")) == 1
    assert refusals(other_account, "create_vault") == []


def test_kms_without_a_key_is_refused(account, region):
    # rule V4: KMS encryption needs a KeyId
    with pytest.raises(ValidationError) as excinfo:
        services.create_vault(
            actor=None, account=account, region=region, name="no-key", encryption_method=EncryptionMethod.KMS
        )
    assert "kms_key" in excinfo.value.message_dict
    assert not Vault.objects.filter(name="no-key").exists()
    assert len(refusals(account, "create_vault")) == 1


def test_local_kms_key_material_is_outside_the_database(settings, account, region):
    # rule V4: only the KeyId is stored; the built-in key service keeps its master key in a file
    key = services.create_kms_key(actor=None, account=account, region=region, alias="hz-key")
    assert key.provider == "local"
    path = f"{settings.KMS['local_root']}/{region.code}/{key.key_id}.key"
    master = open(path, "rb").read()
    assert len(master) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert_nowhere(master, whole_database())
    vault = services.create_vault(
        actor=None, account=account, region=region, name="kv", encryption_method=EncryptionMethod.KMS, kms_key=key
    )
    assert len(unwrap_data_key(Vault.objects.get(pk=vault.pk))) == DATA_KEY_BYTES
    # without the key file, nothing opens
    os.remove(path)
    with pytest.raises(KeyProviderError):
        unwrap_data_key(Vault.objects.get(pk=vault.pk))


# -- KMS over boto3 (moto's KMS server) -------------------------------------------------------


def test_aws_kms_key_is_created_in_the_regions_kms(settings, aws_kms, account, lrs_region):
    # rule V4: create_kms_key makes a real key in the region's KMS; only its KeyId is kept
    key = services.create_kms_key(actor=None, account=account, region=lrs_region, alias="sv-key")
    assert key.provider == "aws"
    meta = kms_client(settings, lrs_region.code).describe_key(KeyId=key.key_id)["KeyMetadata"]
    assert meta["KeyId"] == key.key_id
    assert meta["Description"] == "sv-key"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["Enabled"] is True
    assert f":{lrs_region.code}:" in meta["Arn"]
    # the key exists in this region's KMS only
    with pytest.raises(ClientError) as excinfo:
        kms_client(settings, "us-east-1").describe_key(KeyId=key.key_id)
    assert excinfo.value.response["Error"]["Code"] == "NotFoundException"
    audit = AuditLog.objects.get(action="create_kms_key", object_id=key.key_id)
    assert audit.outcome == AuditLog.Outcome.SUCCESS and audit.region_code == lrs_region.code

    vault = services.create_vault(
        actor=None,
        account=account,
        region=lrs_region,
        name="aws-kv",
        encryption_method=EncryptionMethod.KMS,
        kms_key=key,
    )
    vault = Vault.objects.get(pk=vault.pk)
    assert len(unwrap_data_key(vault)) == DATA_KEY_BYTES
    # the wrapped key is bound to the vault: the wrong encryption context does not decrypt
    with pytest.raises(ClientError):
        kms_client(settings, lrs_region.code).decrypt(
            CiphertextBlob=bytes(vault.wrapped_data_key), EncryptionContext={"vault": "v-someone-else"}
        )


def test_aws_kms_unknown_key_cannot_wrap(settings, aws_kms, account, lrs_region):
    # rule V4: when the region's KMS refuses to wrap (a KeyId it does not have), no vault is created
    # and the refusal is audited
    ghost = KmsKey.objects.create(
        account=account, region=lrs_region, key_id=str(uuid.uuid4()), alias="ghost", provider="aws"
    )
    before = Vault.objects.count()
    with pytest.raises(ValidationError) as excinfo:
        services.create_vault(
            actor=None,
            account=account,
            region=lrs_region,
            name="off",
            encryption_method=EncryptionMethod.KMS,
            kms_key=ghost,
        )
    assert "kms_key" in excinfo.value.message_dict
    assert Vault.objects.count() == before
    assert len(refusals(account, "create_vault")) == 1


# -- the key never changes (update) --------------------------------------------------------------


def test_update_vault_cannot_change_the_key(kms_backend, account, kms_region):
    # rule V4: encryption method and key are fixed at creation; update_vault has no way to change them
    params = inspect.signature(services.update_vault).parameters
    assert not {"kms_key", "encryption_method", "wrapped_data_key"} & set(params)
    key = services.create_kms_key(actor=None, account=account, region=kms_region, alias="fixed")
    other_key = services.create_kms_key(actor=None, account=account, region=kms_region, alias="other")
    vault = services.create_vault(
        actor=None,
        account=account,
        region=kms_region,
        name="fixed-vault",
        encryption_method=EncryptionMethod.KMS,
        kms_key=key,
    )
    before = Vault.objects.get(pk=vault.pk)
    wrapped, data_key = bytes(before.wrapped_data_key), unwrap_data_key(before)

    with pytest.raises(TypeError):
        services.update_vault(actor=None, vault=before, kms_key=other_key)
    # a stale in-memory object carrying another key changes nothing on save through the service
    before.kms_key = other_key
    before.encryption_method = EncryptionMethod.CLOUD_BACKUP_MANAGED
    services.update_vault(actor=None, vault=before, name="renamed", description="new text")

    after = Vault.objects.get(pk=vault.pk)
    assert after.name == "renamed" and after.description == "new text"
    assert after.kms_key_id == key.pk
    assert after.encryption_method == EncryptionMethod.KMS
    assert bytes(after.wrapped_data_key) == wrapped
    assert unwrap_data_key(after) == data_key


def test_update_managed_vault_keeps_its_wrapped_key(make_vault):
    # rule V4: renaming a Cloud Backup-managed vault leaves its wrapped key and method as they were
    vault = Vault.objects.get(pk=make_vault("managed").pk)
    wrapped, data_key = bytes(vault.wrapped_data_key), unwrap_data_key(vault)
    services.update_vault(actor=None, vault=vault, name="managed-renamed")
    after = Vault.objects.get(pk=vault.pk)
    assert after.name == "managed-renamed"
    assert after.encryption_method == EncryptionMethod.CLOUD_BACKUP_MANAGED
    assert after.kms_key_id is None
    assert bytes(after.wrapped_data_key) == wrapped
    assert unwrap_data_key(after) == data_key


def test_unreachable_kms_refuses_key_creation(settings, aws_kms, account, lrs_region):
    # rule V4 / A3: a KMS that cannot be reached creates no KmsKey row; the refusal is audited
    settings.KMS = {**settings.KMS, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    keys._kms_client.cache_clear()
    with pytest.raises(ValidationError) as excinfo:
        services.create_kms_key(actor=None, account=account, region=lrs_region, alias="nowhere")
    assert "create_key" in " ".join(excinfo.value.messages)
    assert not KmsKey.objects.filter(alias="nowhere").exists()
    assert len(refusals(account, "create_kms_key")) == 1


def test_admin_change_form_cannot_change_the_key(client, account, region):
    # rule V4 on the admin path: posting encryption fields to the change form leaves the key as it was
    admin_user = make_user("root", staff=True, superuser=True)
    client.force_login(admin_user)
    key = services.create_kms_key(actor=None, account=account, region=region, alias="fixed")
    other_key = services.create_kms_key(actor=None, account=account, region=region, alias="other")
    vault = services.create_vault(
        actor=None, account=account, region=region, name="adm", encryption_method=EncryptionMethod.KMS, kms_key=key
    )
    before = Vault.objects.get(pk=vault.pk)
    wrapped = bytes(before.wrapped_data_key)

    response = client.post(
        f"/admin/vaults/vault/{vault.pk}/change/",
        {
            "name": "adm-renamed",
            "description": "",
            "resource_group": before.resource_group_id,
            "encryption_method": EncryptionMethod.CLOUD_BACKUP_MANAGED,
            "kms_key": other_key.pk,
            "wrapped_data_key": "00" * 60,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    after = Vault.objects.get(pk=vault.pk)
    assert after.name == "adm-renamed"
    assert after.kms_key_id == key.pk
    assert after.encryption_method == EncryptionMethod.KMS
    assert bytes(after.wrapped_data_key) == wrapped
