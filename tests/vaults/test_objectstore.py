"""Region object stores, both backends (a local directory per region and an S3 bucket per region).

Every test runs twice: once on the embedded local directories and once on buckets of moto's S3
server (a real HTTP process on loopback, see `s3_stores`). What is stored is checked with the
raw means of each backend (the file system, a plain boto3 client), not through the product's
own store classes.
"""

import json
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from django.core.exceptions import ValidationError

from console.models import AuditLog, Region
from tests.conftest import free_port, wait_until
from vaults import services
from vaults.dataplane import objectstore
from vaults.models import Vault, VaultStatus


@pytest.fixture(params=["local", "s3"])
def backend(request):
    """The deployment-wide store backend of the test: local directories or moto's S3 buckets."""
    if request.param == "s3":
        request.getfixturevalue("s3_stores")
    return request.param


class RawStore:
    """Reads a region's default store directly: the directory on disk or the bucket on the endpoint."""

    def __init__(self, settings):
        self.config = dict(settings.OBJECT_STORE)

    def location(self, region_code):
        if self.config["backend"] == "s3":
            return self.config["bucket_template"].format(region=region_code)
        return Path(self.config["root"]) / region_code

    def client(self):
        return objectstore.s3_client(self.config["endpoint_url"], self.config["access_key"], self.config["secret_key"])

    def keys(self, region_code, prefix=""):
        if self.config["backend"] == "s3":
            return s3_keys(self.client(), self.location(region_code), prefix)
        return local_keys(self.location(region_code), prefix)

    def read(self, region_code, key):
        if self.config["backend"] == "s3":
            return self.client().get_object(Bucket=self.location(region_code), Key=key)["Body"].read()
        return (self.location(region_code) / key).read_bytes()

    def write(self, region_code, key, data):
        """Put an object as a backup would, without the product's store classes."""
        if self.config["backend"] == "s3":
            self.client().put_object(Bucket=self.location(region_code), Key=key, Body=data)
        else:
            path = self.location(region_code) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def s3_keys(client, bucket, prefix=""):
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchBucket", "404"}:
            return []
        raise


def local_keys(root, prefix=""):
    root = Path(root)
    base = root / prefix
    if not base.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())


@pytest.fixture
def raw(settings, backend):
    return RawStore(settings)


def marker_key(vault):
    return vault.storage_prefix + "vault.json"


def audit_rows(vault, action):
    return list(AuditLog.objects.filter(object_type="vault", object_id=vault.id, action=action).order_by("id"))


# -- initialization -------------------------------------------------------------------


def test_initialize_creates_storage_area_and_vault_becomes_normal(backend, raw, make_vault, region, account):
    # rule V2: Initializing -> Normal once the vault's storage area exists in its region's store
    vault = make_vault("init-me")
    assert vault.status == VaultStatus.INITIALIZING
    assert raw.keys(region.code) == []  # nothing is written before the task runs

    services.initialize_vault_storage(vault.id)

    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL, vault.status_reason
    assert vault.status_reason == ""
    # the marker object really is in the region's directory / bucket, and says whose it is
    assert raw.keys(region.code) == [marker_key(vault)]
    marker = json.loads(raw.read(region.code, marker_key(vault)))
    assert marker == {"vault": vault.id, "account": account.pk, "region": region.code}
    if backend == "s3":
        client = raw.client()
        head = client.head_object(Bucket=raw.location(region.code), Key=marker_key(vault))
        assert head["ContentLength"] == len(raw.read(region.code, marker_key(vault)))
    else:
        assert (Path(raw.config["root"]) / region.code / "vaults" / vault.id / "vault.json").is_file()
    done = audit_rows(vault, "initialize_vault")
    assert [row.outcome for row in done] == [AuditLog.Outcome.SUCCESS]
    # the tenant's own audit log names the kind of store, never where the operator keeps it
    assert done[0].detail["store"] == backend
    assert str(raw.location(region.code)) not in json.dumps(done[0].detail)


def test_initialize_twice_is_harmless(backend, raw, make_vault, region):
    # rule V2: the task is safe to run twice (acks_late redelivery): same object, same status, one audit row
    vault = make_vault("twice")
    services.initialize_vault_storage(vault.id)
    first = raw.read(region.code, marker_key(vault))
    updated = Vault.objects.get(pk=vault.pk).updated

    assert services.initialize_vault_storage(vault.id) is None

    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL
    assert vault.updated == updated
    assert raw.keys(region.code) == [marker_key(vault)]
    assert raw.read(region.code, marker_key(vault)) == first
    assert len(audit_rows(vault, "initialize_vault")) == 1


def test_initialize_of_unknown_vault_is_a_no_op(backend, raw, region, db):
    # rule V2: a deleted or unknown vault id (late task) writes nothing
    assert services.initialize_vault_storage("v-" + "0" * 20) is None
    assert raw.keys(region.code) == []


def test_regions_use_different_stores(backend, raw, make_vault, region, lrs_region):
    # rule G1 (each region has an object store of its own), V6: a vault's data is in its own region's store
    east = make_vault("hz")
    west = make_vault("sv", reg=lrs_region)
    services.initialize_vault_storage(east.id)
    services.initialize_vault_storage(west.id)

    assert raw.location(region.code) != raw.location(lrs_region.code)
    assert raw.keys(region.code) == [marker_key(east)]
    assert raw.keys(lrs_region.code) == [marker_key(west)]
    assert json.loads(raw.read(region.code, marker_key(east)))["region"] == "cn-hangzhou"
    assert json.loads(raw.read(lrs_region.code, marker_key(west)))["region"] == "us-west-1"
    if backend == "s3":
        buckets = {b["Name"] for b in raw.client().list_buckets()["Buckets"]}
        assert {raw.location(region.code), raw.location(lrs_region.code)} <= buckets


# -- a store that cannot be reached ---------------------------------------------------------


def _break_store(settings, backend, tmp_path):
    """Make the region's default store unusable; returns a function that repairs it."""
    good = settings.OBJECT_STORE
    if backend == "s3":
        # an endpoint on a loopback port nothing listens on
        settings.OBJECT_STORE = {**good, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    else:
        # a plain file where the store's root directory has to be created
        blocker = tmp_path / "blocked"
        blocker.write_bytes(b"not a directory")
        settings.OBJECT_STORE = {**good, "root": str(blocker / "regions")}
    objectstore._store_for.cache_clear()

    def repair():
        settings.OBJECT_STORE = good
        objectstore._store_for.cache_clear()

    return repair


def test_unreachable_store_puts_vault_in_error_then_retry_recovers(
    backend, raw, settings, tmp_path, make_vault, region, user
):
    # rule V2 (Error status with the reason), A3 (failed and retried actions are audited)
    vault = make_vault("unlucky")
    repair = _break_store(settings, backend, tmp_path)

    services.initialize_vault_storage(vault.id)

    vault.refresh_from_db()
    assert vault.status == VaultStatus.ERROR
    store_name = f"bucket {raw.location(region.code)}" if backend == "s3" else "blocked"
    assert store_name in vault.status_reason
    failed = audit_rows(vault, "initialize_vault")
    assert [row.outcome for row in failed] == [AuditLog.Outcome.FAILED]
    assert failed[0].detail["reason"] == vault.status_reason
    assert failed[0].region_code == region.code
    assert failed[0].account_id == vault.account_id
    # a repeated (redelivered) task does not touch a vault that is in Error
    assert services.initialize_vault_storage(vault.id) is None
    assert Vault.objects.get(pk=vault.pk).status == VaultStatus.ERROR

    vault = services.retry_vault_initialization(actor=user, vault=vault)
    assert vault.status == VaultStatus.INITIALIZING
    assert vault.status_reason == ""
    retried = audit_rows(vault, "retry_vault_initialization")
    assert [(row.outcome, row.actor_id) for row in retried] == [(AuditLog.Outcome.SUCCESS, user.pk)]

    repair()
    services.initialize_vault_storage(vault.id)
    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL, vault.status_reason
    assert raw.keys(region.code) == [marker_key(vault)]
    assert [row.outcome for row in audit_rows(vault, "initialize_vault")] == [
        AuditLog.Outcome.FAILED,
        AuditLog.Outcome.SUCCESS,
    ]


def test_retry_is_refused_unless_the_vault_is_in_error(backend, make_vault):
    # rule V2, A3: only an Error vault retries; the refusal is audited and nothing changes
    vault = make_vault("fine")
    services.initialize_vault_storage(vault.id)
    with pytest.raises(ValidationError):
        services.retry_vault_initialization(actor=None, vault=Vault.objects.get(pk=vault.pk))
    assert Vault.objects.get(pk=vault.pk).status == VaultStatus.NORMAL
    assert [row.outcome for row in audit_rows(vault, "retry_vault_initialization")] == [AuditLog.Outcome.REFUSED]


# -- deletion ---------------------------------------------------------------------------


def test_delete_vault_removes_all_its_objects_and_row_only(
    backend, raw, make_vault, region, django_capture_on_commit_callbacks
):
    # rule V7: deleting a vault removes all its backup data (every object under its prefix) and its row,
    # and nothing of any other vault
    doomed = make_vault("doomed")
    kept = make_vault("kept")
    for vault in (doomed, kept):
        services.initialize_vault_storage(vault.id)
        raw.write(region.code, vault.storage_prefix + "chunks/ab/abcdef", b"chunk-" + vault.id.encode())
        raw.write(region.code, vault.storage_prefix + "points/p-1/manifest.json", b"{}")
    kept_keys = raw.keys(region.code, kept.storage_prefix)
    assert len(kept_keys) == 3
    assert len(raw.keys(region.code, doomed.storage_prefix)) == 3

    with django_capture_on_commit_callbacks(execute=True):  # the data goes once the rows are gone
        services.delete_vault(actor=None, vault=doomed, confirmation="doomed")

    assert raw.keys(region.code, doomed.storage_prefix) == []
    assert not Vault.objects.filter(pk=doomed.pk).exists()
    assert raw.keys(region.code) == kept_keys
    assert raw.read(region.code, kept.storage_prefix + "chunks/ab/abcdef") == b"chunk-" + kept.id.encode()
    assert Vault.objects.filter(pk=kept.pk).exists()
    rows = audit_rows(doomed, "delete_vault")
    assert [(row.outcome, row.detail["name"]) for row in rows] == [(AuditLog.Outcome.SUCCESS, "doomed")]


def test_delete_vault_prefix_does_not_swallow_a_vault_whose_id_extends_it(
    backend, raw, make_vault, region, django_capture_on_commit_callbacks
):
    # rule V7: the prefix ends in "/", so objects of a vault whose id starts with the deleted id stay
    doomed = make_vault("doomed")
    services.initialize_vault_storage(doomed.id)
    lookalike = f"vaults/{doomed.id}x/chunks/1"
    raw.write(region.code, lookalike, b"someone else's")

    with django_capture_on_commit_callbacks(execute=True):  # the data goes once the rows are gone
        services.delete_vault(actor=None, vault=doomed, confirmation=doomed.name)

    assert raw.keys(region.code) == [lookalike]


@pytest.mark.parametrize("confirmation", ["", None, "Doomed", "doome", "doomed-x", "kept"])
def test_delete_vault_with_wrong_confirmation_changes_nothing(backend, raw, make_vault, region, confirmation):
    # rule V7: explicit confirmation (the vault's name) is required; a wrong one deletes nothing
    doomed = make_vault("doomed")
    make_vault("kept")
    services.initialize_vault_storage(doomed.id)
    raw.write(region.code, doomed.storage_prefix + "chunks/1", b"data")
    before = raw.keys(region.code)

    with pytest.raises(ValidationError) as excinfo:
        services.delete_vault(actor=None, vault=doomed, confirmation=confirmation)

    assert "confirmation" in excinfo.value.message_dict
    assert raw.keys(region.code) == before
    assert raw.read(region.code, doomed.storage_prefix + "chunks/1") == b"data"
    assert Vault.objects.filter(pk=doomed.pk, status=VaultStatus.NORMAL).exists()
    assert [row.outcome for row in audit_rows(doomed, "delete_vault")] == [AuditLog.Outcome.REFUSED]


def test_delete_vault_under_backup_lock_keeps_data(backend, raw, make_vault, region):
    # rule V7 / L1: the backup lock forbids deletion; the data stays
    vault = make_vault("locked")
    services.initialize_vault_storage(vault.id)
    services.enable_backup_lock(actor=None, vault=vault)
    with pytest.raises(ValidationError):
        services.delete_vault(actor=None, vault=vault, confirmation="locked")
    assert raw.keys(region.code) == [marker_key(vault)]
    assert Vault.objects.filter(pk=vault.pk).exists()


# -- a region's own store settings ----------------------------------------------------------


@pytest.mark.parametrize("override", ["to-s3-bucket", "to-local-directory", "to-other-bucket"])
def test_region_row_overrides_the_deployment_store(
    settings, tmp_path, moto_server, make_vault, region, override, django_capture_on_commit_callbacks
):
    # rule G1/G2: operators re-point a region's store in its row (store_backend/location/endpoint)
    bucket = "override-" + uuid.uuid4().hex[:12]
    client = objectstore.s3_client(moto_server, "testing", "testing")
    if override == "to-s3-bucket":
        # deployment default: local directories; this region alone: a bucket on an S3 endpoint
        settings.OBJECT_STORE = {**settings.OBJECT_STORE, "access_key": "testing", "secret_key": "testing"}
        Region.objects.filter(pk=region.pk).update(
            store_backend="s3", store_location=bucket, store_endpoint_url=moto_server
        )
    elif override == "to-local-directory":
        # deployment default: buckets on an (unreachable) endpoint; this region alone: a directory
        settings.OBJECT_STORE = {
            **settings.OBJECT_STORE,
            "backend": "s3",
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "bucket_template": "never-{region}",
        }
        Region.objects.filter(pk=region.pk).update(store_backend="local", store_location=str(tmp_path / "hz-disk"))
    else:
        # deployment default: buckets on an unreachable endpoint; this region: its own bucket and endpoint
        settings.OBJECT_STORE = {
            **settings.OBJECT_STORE,
            "backend": "s3",
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "bucket_template": "never-{region}",
            "access_key": "testing",
            "secret_key": "testing",
        }
        Region.objects.filter(pk=region.pk).update(store_location=bucket, store_endpoint_url=moto_server)
    objectstore._store_for.cache_clear()
    region.refresh_from_db()

    vault = make_vault("overridden")
    services.initialize_vault_storage(vault.id)
    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL, vault.status_reason

    if override == "to-local-directory":
        assert local_keys(tmp_path / "hz-disk") == [marker_key(vault)]
        assert not (Path(settings.OBJECT_STORE["root"]) / region.code).exists()
    else:
        assert s3_keys(client, bucket) == [marker_key(vault)]
        body = client.get_object(Bucket=bucket, Key=marker_key(vault))["Body"].read()
        assert json.loads(body)["vault"] == vault.id
        assert local_keys(Path(settings.OBJECT_STORE["root"])) == []
    # deletion goes to the same overridden store
    with django_capture_on_commit_callbacks(execute=True):  # the data goes once the rows are gone
        services.delete_vault(actor=None, vault=vault, confirmation="overridden")
    if override == "to-local-directory":
        assert local_keys(tmp_path / "hz-disk") == []
    else:
        assert s3_keys(client, bucket) == []


# -- the real worker, on S3 ---------------------------------------------------------------------


@pytest.mark.worker
def test_worker_initializes_vault_in_s3_bucket(s3_stores, celery_worker_process, make_vault, region, moto_server):
    # rule V2: a real Celery worker process, configured for S3 through its environment, creates the
    # vault's storage area in the region's bucket and the vault becomes Normal
    vault = make_vault("worker-s3")
    assert vault.status == VaultStatus.INITIALIZING
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status != VaultStatus.INITIALIZING, timeout=60)
    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL, vault.status_reason
    bucket = s3_stores["bucket_template"].format(region=region.code)
    client = objectstore.s3_client(moto_server, "testing", "testing")
    assert s3_keys(client, bucket) == [marker_key(vault)]
    assert json.loads(client.get_object(Bucket=bucket, Key=marker_key(vault))["Body"].read())["vault"] == vault.id
    # nothing went to the local directories instead
    assert local_keys(Path(s3_stores["root"])) == []


@pytest.mark.parametrize("direct", ["supported", "refused"])
def test_large_objects_written_directly_come_back_byte_for_byte(tmp_path, monkeypatch, direct):
    # packs (>= DIRECT_MIN) bypass the page cache with O_DIRECT; a filesystem that refuses it gets plain writes
    import errno
    import os

    if direct == "refused":  # no filesystem here refuses O_DIRECT, so the refusal is simulated (EINVAL on open)
        real_open = os.open

        def open_without_direct(path, flags, *args):
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *args)

        monkeypatch.setattr(objectstore.os, "open", open_without_direct)
    store = objectstore.LocalRegionStore(tmp_path)
    sizes = [objectstore.DIRECT_MIN - 1, objectstore.DIRECT_MIN, 5 * objectstore.DIRECT_MIN + 1234, 9 << 20]
    for size in sizes:
        data = bytearray(os.urandom(size))
        store.put(f"v/packs/{size}", data)
        assert (tmp_path / "v" / "packs" / str(size)).read_bytes() == data
        assert store.get_range(f"v/packs/{size}", size - 5000, 5000) == data[-5000:]
    assert sorted(store.list_keys("v/")) == sorted(f"v/packs/{size}" for size in sizes)
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary left behind


@pytest.mark.parametrize("refusal", [None, "open", "write"])
def test_direct_writer_writes_every_byte_in_order_whatever_the_pieces(tmp_path, monkeypatch, refusal):
    # restored files arrive in chunk-sized pieces: staged, written in aligned blocks, the tail the usual way
    import errno
    import os
    import random

    from vaults.dataplane import directio

    if refusal:  # no filesystem here refuses O_DIRECT, so the refusal is simulated (EINVAL), at open or at write
        real_open, real_pwrite, direct_fds = os.open, os.pwrite, set()

        def fake_open(path, flags, *args):
            if flags & os.O_DIRECT and refusal == "open":
                raise OSError(errno.EINVAL, "Invalid argument")
            fd = real_open(path, flags, *args)
            if flags & os.O_DIRECT:
                direct_fds.add(fd)
            return fd

        def fake_pwrite(fd, data, offset):
            if fd in direct_fds:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(directio.os, "open", fake_open)
        monkeypatch.setattr(directio.os, "pwrite", fake_pwrite)
    rng = random.Random(5)
    for size in (directio.STAGING - 1, directio.STAGING, directio.STAGING + 1, 3 * directio.STAGING + 4097):
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        with open(path, "wb") as f:
            with directio.DirectWriter(path, f.fileno()) as writer:
                position = 0
                while position < size:
                    step = rng.choice([1, 4095, 65536, 200_000, directio.STAGING + 3])
                    writer.write(data[position : position + step])
                    position += step
                writer.finish()
        assert path.read_bytes() == data


def test_a_deleted_vault_whose_data_could_not_be_removed_is_cleared_later(
    backend, raw, make_vault, region, monkeypatch, django_capture_on_commit_callbacks
):
    # rule V7: the rows go at once; data the store would not remove, or a late writer's, goes with the
    # hourly pass, which forgets the area once a removal an hour after the deletion worked
    from datetime import timedelta

    from django.utils import timezone

    from vaults.models import RemovedVaultArea

    doomed = services.initialize_vault_storage(make_vault("doomed").id)
    raw.write(region.code, doomed.storage_prefix + "packs/ab/abc", b"data")
    store_class = type(objectstore.region_store(region))
    real_delete = store_class.delete_prefix

    def unreachable(self, prefix):  # a store that fails mid-request cannot be caused on loopback
        raise objectstore.ObjectStoreError("the endpoint did not answer")

    monkeypatch.setattr(store_class, "delete_prefix", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_vault(actor=None, vault=doomed, confirmation="doomed")
    assert not Vault.objects.filter(pk=doomed.pk).exists()
    area = RemovedVaultArea.objects.get(vault_id=doomed.id)
    assert area.attempts == 1 and "did not answer" in area.error
    assert raw.keys(region.code, doomed.storage_prefix)

    monkeypatch.setattr(store_class, "delete_prefix", real_delete)
    assert services.clear_removed_areas() == [doomed.id]
    assert raw.keys(region.code, doomed.storage_prefix) == []
    raw.write(region.code, doomed.storage_prefix + "packs/cd/cde", b"a job still writing")  # a late pack
    RemovedVaultArea.objects.filter(pk=area.pk).update(deleted=timezone.now() - timedelta(hours=2))
    assert services.clear_removed_areas() == [doomed.id]
    assert raw.keys(region.code, doomed.storage_prefix) == [] and not RemovedVaultArea.objects.exists()
