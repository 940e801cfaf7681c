"""Key providers (rule V4): each vault's random data key, kept only wrapped.

"Cloud Backup-managed" wraps under a per-region service key derived from a
master secret that lives outside the database. "KMS" wraps under a customer
key of the vault's region: the built-in key service ("local", master keys in
files outside the database) or a KMS API through boto3 ("aws").
"""

import functools
import secrets
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from console.master_secret import derived_key, read_or_create_secret_file

DATA_KEY_BYTES = 32


class KeyProviderError(Exception):
    """A key service refused or could not be reached."""


def new_data_key():
    return secrets.token_bytes(DATA_KEY_BYTES)


def _seal(key, plaintext, aad):
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key, sealed, aad):
    if len(sealed) < 12 + 16:
        raise KeyProviderError("The wrapped key is truncated or corrupted.")
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
    except InvalidTag as exc:
        raise KeyProviderError("The wrapped key does not open under this key (wrong key or tampered).") from exc


# -- Cloud Backup-managed -----------------------------------------------------


def service_key(region_code):
    """The per-region service master key; derived on use, never stored."""
    return derived_key(b"cloud-backup-managed:" + region_code.encode())


def seal_credential(secret, name):
    """A tenant's credential (an S3 secret key) sealed under the master secret; bound to `name`."""
    return _seal(_credential_key(), secret.encode(), b"credential:" + name.encode())


def open_credential(sealed, name):
    return _open(_credential_key(), bytes(sealed), b"credential:" + name.encode()).decode()


def _credential_key():
    return derived_key(b"tenant-credentials")


# -- KMS ------------------------------------------------------------------------


class LocalKms:
    """The built-in key service: one 256-bit master key per file, per region."""

    name = "local"

    def _path(self, region_code, key_id):
        if not key_id.replace("-", "").isalnum():
            raise KeyProviderError(f"Malformed KMS KeyId {key_id!r}.")
        return Path(settings.KMS["local_root"]) / region_code / f"{key_id}.key"

    def create_key(self, region_code, alias):
        key_id = "key-" + secrets.token_hex(12)
        read_or_create_secret_file(self._path(region_code, key_id), 32)
        return key_id

    def encrypt(self, region_code, key_id, plaintext, context):
        return _seal(self._master(region_code, key_id), plaintext, context.encode())

    def decrypt(self, region_code, key_id, blob, context):
        return _open(self._master(region_code, key_id), blob, context.encode())

    def _master(self, region_code, key_id):
        try:
            return self._path(region_code, key_id).read_bytes()
        except FileNotFoundError as exc:
            raise KeyProviderError(f"KMS key {key_id} does not exist in {region_code}.") from exc


class AwsKms:
    """A KMS API per region through boto3 (AWS KMS, or a compatible service)."""

    name = "aws"

    def create_key(self, region_code, alias):
        response = self._call(region_code, "create_key", Description=alias, KeyUsage="ENCRYPT_DECRYPT")
        return response["KeyMetadata"]["KeyId"]

    def encrypt(self, region_code, key_id, plaintext, context):
        response = self._call(
            region_code, "encrypt", KeyId=key_id, Plaintext=plaintext, EncryptionContext={"vault": context}
        )
        return response["CiphertextBlob"]

    def decrypt(self, region_code, key_id, blob, context):
        response = self._call(
            region_code, "decrypt", KeyId=key_id, CiphertextBlob=blob, EncryptionContext={"vault": context}
        )
        return response["Plaintext"]

    def _call(self, region_code, operation, **kwargs):
        try:
            return getattr(_kms_client(region_code), operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise KeyProviderError(f"KMS in {region_code} refused {operation}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _kms_client(region_code):
    config = settings.KMS
    return boto3.client(
        "kms",
        region_name=config["signing_region"] or region_code,
        endpoint_url=config["endpoint_url"] or None,
        aws_access_key_id=config["access_key"] or None,
        aws_secret_access_key=config["secret_key"] or None,
    )


KMS_PROVIDERS = {"local": LocalKms(), "aws": AwsKms()}


def kms_provider(name=None):
    name = name or settings.KMS["backend"]
    try:
        return KMS_PROVIDERS[name]
    except KeyError:
        raise KeyProviderError(f"Unknown KMS backend {name!r}.") from None


# -- wrapping ---------------------------------------------------------------------


def wrap_data_key(*, data_key, vault_id, region_code, kms_key=None, purpose="data"):
    """Wrap one of a vault's keys under its provider; the result is all the database keeps."""
    context = vault_id if purpose == "data" else f"{vault_id}:{purpose}"
    if kms_key is None:
        return _seal(service_key(region_code), data_key, context.encode())
    return kms_provider(kms_key.provider).encrypt(region_code, kms_key.key_id, data_key, context)


def _unwrap(vault, wrapped, purpose):
    context = vault.id if purpose == "data" else f"{vault.id}:{purpose}"
    if vault.kms_key_id is None:
        return _open(service_key(vault.region.code), wrapped, context.encode())
    key = vault.kms_key
    return kms_provider(key.provider).decrypt(vault.region.code, key.key_id, wrapped, context)


def unwrap_data_key(vault):
    """The key chunks and manifests are encrypted under (AES-256-GCM)."""
    return _unwrap(vault, bytes(vault.wrapped_data_key), "data")


def unwrap_chunk_id_key(vault):
    """The key of the keyed hash that names chunks, so ids reveal nothing about plaintext.

    A replication target shares its source's id key (never its data key), so equal
    chunks have equal ids in both vaults and copying can be planned from the index.
    """
    return _unwrap(vault, bytes(vault.wrapped_chunk_id_key), "chunk-id")


class VaultKeys:
    def __init__(self, data_key, chunk_id_key):
        self.data_key = data_key
        self.chunk_id_key = chunk_id_key


_keys_cache = {}


def vault_keys(vault):
    """Both keys of a vault, unwrapped once per process (a KMS call each otherwise)."""
    cache_key = (vault.id, bytes(vault.wrapped_data_key), bytes(vault.wrapped_chunk_id_key))
    keys = _keys_cache.get(cache_key)
    if keys is None:
        keys = VaultKeys(unwrap_data_key(vault), unwrap_chunk_id_key(vault))
        if len(_keys_cache) > 256:
            _keys_cache.clear()
        _keys_cache[cache_key] = keys
    return keys
