"""Restore test support: points in a General Backup vault or, after a real replication, in a
Replication Target vault; prepared restore targets; synchronous restore jobs; and what a restored
tree or bucket holds, read with plain `os` calls and a plain boto3 client (never the product's classes).
"""

import uuid
from pathlib import Path

import pytest
from django.conf import settings

from replication import engine
from replication import services as replication_services
from replication.models import ReplicatedPoint, ReplicationPair
from restore import services
from restore.models import RestoreJob
from tests.vaults.conftest import (  # noqa: F401 - re-exported for the restore tests
    KiB,
    MiB,
    RawStore,
    build_tree,
    compressible_bytes,
    owned_bucket,
    random_bytes,
    snapshot,
    write,
)
from vaults import services as vault_services
from vaults.dataplane.objectstore import is_valid_bucket_name, s3_client
from vaults.models import BackupJob, BackupPoint, Vault, VaultType

_names = iter(range(1, 1_000_000))


def unique(prefix):
    return f"{prefix}-{next(_names)}"


# -- vaults, points, replication --------------------------------------------------------------------


@pytest.fixture
def general_vault(make_vault):
    """A General Backup vault of cn-hangzhou in Normal state."""

    def make(name=None):
        vault = make_vault(name or unique("general"))
        vault_services.initialize_vault_storage(vault.id)
        return Vault.objects.select_related("region", "account").get(pk=vault.pk)

    return make


def make_source(account, region, source_type, *, path="", bucket="", prefix=""):
    owned_bucket(account, region, bucket)
    return vault_services.create_backup_source(
        actor=None,
        account=account,
        region=region,
        source_type=source_type,
        name=unique(source_type),
        path=str(path) if path else "",
        bucket=bucket,
        prefix=prefix,
    )


def back_up(vault, source):
    """One committed point of `source` in `vault` (the job run here, as the Celery task would)."""
    job = vault_services.start_backup(actor=None, vault=vault, source=source)
    vault_services.run_backup_job(job.pk)
    job = BackupJob.objects.get(pk=job.pk)
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    return BackupPoint.objects.select_related("vault__region", "vault__account").get(pk=job.point_id)


def replicate(vault, destination_region):
    """Replicate `vault` to a new Replication Target vault and run the copy engine: {source point id: replica}."""
    pair = replication_services.start_replication(
        actor=None,
        source_vault=vault,
        destination_region=destination_region,
        create={
            "name": unique("replica"),
            "description": "",
            "resource_group": None,
            "encryption_method": None,
            "kms_key": None,
        },
    )
    pair = engine.sync_pair(pair.id)
    assert pair.state == ReplicationPair.State.RUNNING, pair.error
    copies = ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED)
    replicas = {}
    for copy in copies.select_related("target_point__vault__region"):
        replica = copy.target_point
        assert replica.vault.vault_type == VaultType.REPLICATION_TARGET
        assert replica.vault.region_id == destination_region.pk
        replicas[copy.source_point_id] = replica
    return replicas


@pytest.fixture
def point_of(account, region, lrs_region, general_vault):
    """(point, region of the point): a point of a source in a General Backup vault of cn-hangzhou, or its
    copy in a Replication Target vault of us-west-1 after a real replication."""

    def make(vault_kind, source_type, *, path="", bucket="", prefix=""):
        vault = general_vault()
        point = back_up(vault, make_source(account, region, source_type, path=path, bucket=bucket, prefix=prefix))
        if vault_kind == "general":
            return point, region
        assert vault_kind == "replica"
        replica = replicate(vault, lrs_region)[point.id]
        assert replica.source_type == source_type and replica.size == point.size
        return replica, lrs_region

    return make


# -- targets and jobs --------------------------------------------------------------------------------


def make_target(account, region, kind, location, *, prefix="", network="internet", name=None):
    """A restore target; a bucket it names is given to its account first, as an operator would."""
    if kind == "oss-bucket" and is_valid_bucket_name(str(location)):
        owned_bucket(account, region, str(location))
    return services.create_restore_target(
        actor=None,
        account=account,
        region=region,
        kind=kind,
        name=name or unique(kind),
        location=str(location),
        prefix=prefix,
        network=network,
    )


def restore(point, target, **kwargs):
    """Start a restore through the service and run the job here (the function the Celery task calls)."""
    job = services.start_restore(actor=None, point=point, target=target, **kwargs)
    services.run_restore_job(job.pk)
    return RestoreJob.objects.get(pk=job.pk)


def restore_ok(point, target, **kwargs):
    job = restore(point, target, **kwargs)
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    return job


# -- what a restore wrote ----------------------------------------------------------------------------


def tree_of(root):
    """snapshot() of a restored directory, read with os calls only."""
    return snapshot(root)


def part_files(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.name.endswith(".part"))


def assert_tree_equal(got, want):
    """Same entries with the same type, mode, mtime (ns), bytes and link target."""
    assert sorted(got) == sorted(want)
    for path, w in want.items():
        g = got[path]
        assert g["type"] == w["type"], path
        if w["type"] != "symlink":  # a symlink's own mode is always 0o777 on Linux
            assert g["mode"] == w["mode"], (path, oct(g["mode"]), oct(w["mode"]))
        assert g["mtime_ns"] == w["mtime_ns"], (path, g["mtime_ns"], w["mtime_ns"])
        if w["type"] == "file":
            assert len(g["data"]) == len(w["data"]) and g["data"] == w["data"], f"{path}: bytes differ"
        if w["type"] == "symlink":
            assert g["target"] == w["target"], path


# -- OSS buckets -------------------------------------------------------------------------------------


def s3_raw_client():
    return s3_client(settings.OBJECT_STORE["endpoint_url"], "testing", "testing")


def local_bucket_dir(region, name):
    """Where the embedded default keeps an OSS bucket of a region."""
    return Path(settings.OBJECT_STORE["root"]) / "oss" / region.code / name


def create_bucket(backend, region, name=None):
    """An empty OSS bucket of the region: a directory in the embedded default, a bucket on S3."""
    name = name or "b-" + uuid.uuid4().hex[:12]
    if backend == "s3":
        s3_raw_client().create_bucket(Bucket=name)
    else:
        local_bucket_dir(region, name).mkdir(parents=True)
    return name


def bucket_objects(backend, region, name, prefix=""):
    """key -> (bytes, content type or None) of every object of a bucket under prefix."""
    if backend == "s3":
        client = s3_raw_client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
            for obj in page.get("Contents", []):
                got = client.get_object(Bucket=name, Key=obj["Key"])
                out[obj["Key"]] = (got["Body"].read(), got["ContentType"])
        return out
    root = local_bucket_dir(region, name)
    return {
        str(p.relative_to(root)): (p.read_bytes(), None)
        for p in sorted(root.rglob("*"))
        if p.is_file() and str(p.relative_to(root)).startswith(prefix)
    }


@pytest.fixture(params=["local", "s3"])
def store_backend(request):
    """Region stores and OSS buckets: local directories, or buckets on moto's S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3_stores")
    return request.param
