"""Backup data at rest is encrypted under the vault's key (rule V4), whatever the key provider.

After a backup, every object of the region's store (read raw from the directory) is searched for
the plaintext: a distinctive marker, slices of a random file, file names, and the plain BLAKE3 and
SHA-256 hashes of every chunk and file. None may appear.
"""

import hashlib

import blake3
import pytest
import zstandard

from console.models import Region
from tests.vaults.conftest import (
    KiB,
    RawStore,
    assert_point_matches,
    backup_ok,
    make_source,
    random_bytes,
    snapshot,
    write,
)
from vaults import services
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import EncryptionMethod

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]

MARKER = b"ZEBRA-CONFIDENTIAL-4711-PAYROLL"


@pytest.fixture(params=["cloud-backup-managed", "kms-local", "kms-aws"])
def encrypted_vault(request, account, normal_vault):
    """A vault of each encryption method (rule V4); moto's KMS serves AWS region names, hence us-west-1."""
    if request.param == "cloud-backup-managed":
        return normal_vault("managed")
    if request.param == "kms-aws":
        request.getfixturevalue("aws_kms")
        region = Region.objects.get(code="us-west-1")
    else:
        region = Region.objects.get(code="cn-hangzhou")
    key = services.create_kms_key(actor=None, account=account, region=region, alias="backup-key")
    assert key.provider == request.param.removeprefix("kms-")
    return normal_vault("kms", reg=region, encryption_method=EncryptionMethod.KMS, kms_key=key)


def forms_of_hash(data):
    """The plain (unkeyed) digests of some plaintext, as bytes and as hex."""
    b3, sha = blake3.blake3(data), hashlib.sha256(data)
    return [b3.digest(), b3.hexdigest().encode(), sha.digest(), sha.hexdigest().encode()]


def test_backup_data_at_rest_reveals_no_plaintext(tmp_path, account, encrypted_vault):
    # rule V4: all backup data at rest is encrypted under the vault's key
    vault = encrypted_vault
    root = tmp_path / "src"
    marked = (MARKER + b"\n") * 20000  # ~640 KiB, compresses to almost nothing: compression is no cover
    secret = random_bytes(1536 * KiB, 77)
    write(root / "marker.txt", marked)
    write(root / "secret.bin", secret)
    write(root / (MARKER.decode() + "-names-are-data-too.txt"), b"x")
    job = backup_ok(vault, make_source(account, vault.region, "ecs-file", path=root))
    assert job.point.vault.encryption_method == vault.encryption_method
    assert_point_matches(job.point, snapshot(root))
    assert verify_vault(vault)["problems"] == []

    needles = [MARKER, MARKER.lower()]
    needles += [secret[i : i + 64] for i in range(0, len(secret) - 64, len(secret) // 7)]
    needles.append(secret[-64:])
    needles += forms_of_hash(marked) + forms_of_hash(secret)
    reader = PointReader(job.point)
    chunk_count = 0
    for entry in reader.manifest()["entries"]:
        for chunk_hex, _ in entry.get("chunks", []):
            plain = reader.read_chunk(chunk_hex)
            chunk_count += 1
            needles += forms_of_hash(plain)
            # the compressed form is encrypted too, not only the plaintext
            compressed = zstandard.ZstdCompressor(level=3).compress(plain)
            if len(compressed) >= 96:
                needles.append(compressed[32:96])
    assert chunk_count >= 10

    objects = RawStore(vault.region).everything()
    assert any(key.startswith(vault.storage_prefix + "packs/") for key, _ in objects)
    assert any(key.startswith(vault.storage_prefix + "manifests/") for key, _ in objects)
    for key, blob in objects:
        for needle in needles:
            assert needle not in blob, f"plaintext found in {key}"
