"""Retention and expiry (P4), archiving (P5), backup lock (L1) on every path, repacking."""

import os
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from console.models import AuditLog
from vaults import services
from vaults.dataplane import objectstore
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import BackupPoint, Chunk, Pack, Tier, Vault


@pytest.fixture
def vault(make_vault):
    return services.initialize_vault_storage(make_vault("life").id)


def backup(vault, source, **kwargs):
    return services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source, **kwargs).pk)


def source_of(account, region, path, name="src", **kwargs):
    return services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name=name, path=str(path), **kwargs
    )


def store_bytes(vault):
    store = objectstore.region_store(vault.region)
    return sum(len(store.get(k)) for k in store.list_keys(vault.storage_prefix) if not k.endswith("vault.json"))


def age(point, **delta):
    BackupPoint.objects.filter(pk=point.pk).update(
        created=timezone.now() - timedelta(**delta), expires=timezone.now() - timedelta(seconds=1)
    )


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "shared.bin").write_bytes(os.urandom(300_000))
    (root / "only-first.bin").write_bytes(os.urandom(900_000))
    return root


def test_expiry_deletes_expired_points_and_their_data(vault, account, region, tree):
    # rule P4
    source = source_of(account, region, tree)
    first = backup(vault, source, retention_days=1)
    (tree / "only-first.bin").unlink()
    second = backup(vault, source, retention_days=30)
    age(first, days=2)
    BackupPoint.objects.filter(pk=second.pk).update(expires=timezone.now() + timedelta(days=29))
    before = store_bytes(vault)
    assert services.expire_points() == [first.id]
    assert list(BackupPoint.objects.values_list("id", flat=True)) == [second.id]
    vault.refresh_from_db()
    assert store_bytes(vault) < before - 850_000  # only-first.bin's chunks left the store
    assert vault.data_size == store_bytes(vault)
    assert verify_vault(vault)["problems"] == []
    assert AuditLog.objects.filter(action="expire_point", object_id=first.id).exists()


def test_retain_at_least_one_version_keeps_the_newest_point_of_a_source(vault, account, region, tree):
    # rule P4
    source = source_of(account, region, tree, retain_at_least_one=True)
    old = backup(vault, source, retention_days=1)
    new = backup(vault, source, retention_days=1)
    age(old, days=3)
    age(new, days=2)
    assert services.expire_points() == [old.id]
    assert list(BackupPoint.objects.values_list("id", flat=True)) == [new.id]


def test_backup_lock_on_every_path(vault, account, region, tree, client, django_user_model):
    # rule L1: no path deletes a point or shortens its retention before expiry, the admin included
    source = source_of(account, region, tree)
    point = backup(vault, source, retention_days=10)
    services.enable_backup_lock(actor=None, vault=vault)
    vault.refresh_from_db()
    with pytest.raises(ValidationError, match="Backup lock"):
        services.delete_point(actor=None, point=point)
    with pytest.raises(ValidationError, match="never shortened"):
        services.set_point_retention(actor=None, point=point, expires=timezone.now() + timedelta(days=1))
    longer = services.set_point_retention(actor=None, point=point, expires=timezone.now() + timedelta(days=100))
    assert longer.expires > timezone.now() + timedelta(days=99)
    with pytest.raises(ValidationError, match="Backup lock"):
        services.delete_vault(actor=None, vault=vault, confirmation=vault.name)
    with pytest.raises(CommandError, match="Backup lock"):
        call_command("vault", "delete", vault.id, "--yes", stdout=StringIO())
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    assert client.get(f"/admin/vaults/vault/{vault.id}/delete/").status_code == 403
    client.post(
        f"/admin/vaults/vault/{vault.id}/change/",
        {"name": vault.name, "description": "", "resource_group": vault.resource_group_id, "backup_lock": ""},
    )
    vault.refresh_from_db()
    assert vault.backup_lock and BackupPoint.objects.filter(pk=point.pk).exists()
    assert services.expire_points() == []  # not expired yet: the expiry path waits too


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database's own guards are PostgreSQL triggers")
def point_rows(point):
    return BackupPoint.objects.filter(pk=point.pk)


def test_backup_lock_holds_in_the_database_whatever_the_path(vault, account, region, tree, make_vault):
    # rule T4: a shell's bulk update or delete, or raw SQL, is refused by the database itself
    source = source_of(account, region, tree)
    point = backup(vault, source, retention_days=10)
    soon = timezone.now() + timedelta(seconds=1)
    expiring = backup(vault, source, retention_days=10)
    BackupPoint.objects.filter(pk=expiring.pk).update(expires=soon)  # before the lock
    services.enable_backup_lock(actor=None, vault=vault)
    other = services.initialize_vault_storage(make_vault("elsewhere").id)

    def sql(statement, *params):
        return lambda: connection.cursor().execute(statement, params)

    attempts = [  # (what the database says, the attempt)
        ("Backup lock is on", lambda: point_rows(point).update(expires=timezone.now() - timedelta(seconds=1))),
        ("Backup lock is on", lambda: point_rows(point).update(expires=timezone.now() + timedelta(days=1))),
        ("Backup lock is on", lambda: point_rows(point).update(vault=other)),
        ("Backup lock is on", lambda: BackupPoint.objects.filter(vault=vault).delete()),
        ("Backup lock is on", lambda: Vault.objects.filter(pk=vault.pk).update(backup_lock=False)),
        ("Backup lock is on", sql("DELETE FROM vaults_backuppoint WHERE id = %s", point.pk)),
        ("Backup lock is on", sql("UPDATE vaults_backuppoint SET expires = now() - interval '1 day'")),
        ("Backup lock is on", sql("UPDATE vaults_vault SET backup_lock = false")),
        ("Emptying", sql("TRUNCATE vaults_backuppoint CASCADE")),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the checks the test's own writes left pending
        cursor.execute("SET LOCAL cloud_backup.allow_truncate = 'off'")  # as every session but the suite's
    for said, attempt in attempts:
        with pytest.raises(IntegrityError, match=said), transaction.atomic():
            attempt()
    print(f"locks: {len(attempts)} shell, bulk ORM and SQL paths tried on a locked point or lock, 0 succeeded")
    assert BackupPoint.objects.filter(vault=vault).count() == 2 and Vault.objects.get(pk=vault.pk).backup_lock
    # the expiry path is the one that may delete, once the point has expired by the database's clock
    time.sleep(max(0, (soon - timezone.now()).total_seconds()) + 0.2)
    assert services.expire_points() == [expiring.id]
    assert list(BackupPoint.objects.filter(vault=vault).values_list("id", flat=True)) == [point.id]


def test_lock_is_for_general_and_replication_target_vaults(make_vault):
    archive = services.initialize_vault_storage(make_vault("arch", vault_type="archive").id)
    with pytest.raises(ValidationError, match="General Backup"):
        services.enable_backup_lock(actor=None, vault=archive)
    archive.refresh_from_db()
    assert not archive.backup_lock


def test_archiving_moves_only_what_standard_points_do_not_need(vault, account, region, tree):
    # rule P5
    source = source_of(account, region, tree)
    first = backup(vault, source)
    (tree / "only-first.bin").unlink()
    second = backup(vault, source)
    services.set_archive_after_days(actor=None, vault=vault, days=30)
    BackupPoint.objects.filter(pk=first.pk).update(created=timezone.now() - timedelta(days=31))
    assert services.archive_due_points() == [first.id]
    first.refresh_from_db()
    assert first.tier == Tier.ARCHIVE
    archived_chunks = Chunk.objects.filter(pack__tier=Tier.ARCHIVE)
    assert archived_chunks.exists()
    assert not archived_chunks.filter(pointchunk__point=second).exists()  # shared data stays standard
    assert all("/archive/" in key for key in Pack.objects.filter(tier=Tier.ARCHIVE).values_list("key", flat=True))
    vault.refresh_from_db()
    assert vault.data_size == store_bytes(vault)  # the old copies were collected
    assert verify_vault(vault)["problems"] == []
    brought = services.bring_back_point(actor=None, point=first)
    assert brought.tier == Tier.STANDARD and brought.standard_until > timezone.now()
    assert not Chunk.objects.filter(pack__tier=Tier.ARCHIVE).exists()
    assert services.archive_due_points() == []  # it stays standard for a while
    reader = PointReader(brought)
    entry = next(e for e in reader.manifest()["entries"] if e["path"] == "shared.bin")
    assert b"".join(reader.iter_file(entry)) == (tree / "shared.bin").read_bytes()


def test_archive_packs_use_the_archive_storage_class_on_s3(s3_stores, make_vault, account, region, tree, settings):
    vault = services.initialize_vault_storage(make_vault("s3-archive").id)
    point = backup(vault, source_of(account, region, tree))
    services.archive_point(point)
    key = Pack.objects.get(tier=Tier.ARCHIVE).key
    client = objectstore.s3_client(settings.OBJECT_STORE["endpoint_url"], "testing", "testing")
    bucket = objectstore.store_config(region)[1]
    assert client.head_object(Bucket=bucket, Key=key)["StorageClass"] == "GLACIER_IR"
    assert verify_vault(vault)["problems"] == []


def test_repacking_shrinks_packs_left_mostly_empty(vault, account, region, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}.bin").write_bytes(os.urandom(100_000))
    source = source_of(account, region, root)
    first = backup(vault, source)
    for i in range(15):
        (root / f"f{i}.bin").unlink()
    backup(vault, source)
    services.delete_point(actor=None, point=first)
    vault.refresh_from_db()
    assert vault.data_size == store_bytes(vault)
    assert vault.data_size < 5 * 100_000 * 1.2
    assert verify_vault(vault)["problems"] == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_objects_no_row_names_are_swept_once_old(request, backend, vault, make_vault, account, region, tree):
    # a worker killed between an upload and its index row leaves an orphan: garbage collection removes it
    from vaults.services import gc

    if backend == "s3":
        request.getfixturevalue("s3_stores")
        vault = services.initialize_vault_storage(make_vault("s3-sweep").id)
    point = backup(vault, source_of(account, region, tree))
    store = objectstore.region_store(vault.region)
    before = set(store.list_keys(vault.storage_prefix))
    orphans = [f"{vault.storage_prefix}packs/ab/{'ab' * 16}", f"{vault.storage_prefix}manifests/p-orphan"]
    for key in orphans:
        store.put(key, os.urandom(1000))
    if backend == "local":  # a torn write: the temporary file of a put that never finished
        torn = store.root / f"{vault.storage_prefix}packs/cd/.{'cd' * 16}.0123.tmp"
        torn.parent.mkdir(parents=True, exist_ok=True)
        torn.write_bytes(b"half a pack")
    assert services.collect_garbage(vault.id)["orphans"] == 0  # young: maybe a worker about to index it
    assert set(orphans) <= set(store.list_keys(vault.storage_prefix))

    if backend == "local":
        old = (timezone.now() - gc.ORPHAN_AGE - timedelta(minutes=1)).timestamp()
        for path in [store.root / key for key in orphans] + [torn]:
            os.utime(path, (old, old))
    else:  # S3 sets LastModified itself: here every object is old enough
        request.getfixturevalue("monkeypatch").setattr(gc, "ORPHAN_AGE", timedelta(0))
    assert services.collect_garbage(vault.id)["orphans"] == (3 if backend == "local" else 2)
    assert set(store.list_keys(vault.storage_prefix)) == before
    if backend == "local":
        assert not torn.exists()
    assert verify_vault(vault)["problems"] == [] and BackupPoint.objects.filter(pk=point.pk).exists()
