"""Rules T1 and T3: a path, prefix or key a tenant gives never leads outside what the tenant owns.

Each test is an attack a tenant can make with the console or the command line: prefixes with `..`,
keys with `..` in their own source bucket, a symlink or a FIFO swapped in while a backup or a
restore runs, the host's system areas and the service's own data as sources. Every attempt counts
towards the figure printed at the end (`pytest -s tests/security`), which the README quotes.

Races are made deterministic by doing the swap at the moment the engine reaches a given file
(wrapping the function that reads one file's bytes, or the reader of the restore): a swap between
two system calls cannot be caused from outside any other way.
"""

import os
import stat

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from restore import services as restore_services
from restore import writer as restore_writer
from restore.models import RestoreJob, RestoreTarget
from tests.restore.conftest import create_bucket, local_bucket_dir, make_target, restore, s3_raw_client
from tests.vaults.conftest import make_source, read_point, run_backup, write
from vaults.dataplane import backup as engine
from vaults.dataplane import objectstore
from vaults.dataplane.readback import PointReader
from vaults.models import BackupJob, BackupSource

SECRET = b"the-other-tenant's-secret\n"
ATTEMPTS = {"tried": 0, "escaped": 0}


@pytest.fixture(autouse=True, scope="session")
def figure():  # session: printed once, after every test of this file, however pytest orders them
    yield
    print(f"\npaths: {ATTEMPTS['tried']} attacks tried, {ATTEMPTS['escaped']} escapes")


def attack(escaped):
    """Count one attempt; `escaped` says whether it got out."""
    ATTEMPTS["tried"] += 1
    ATTEMPTS["escaped"] += bool(escaped)
    assert not escaped


@pytest.fixture
def vault(make_vault):
    from vaults import services

    v = make_vault("sec-vault")
    services.initialize_vault_storage(v.id)
    v.refresh_from_db()
    return v


@pytest.fixture
def victim(other_tmp_path):
    """Another tenant's file, and a directory of theirs."""
    return write(other_tmp_path / "private" / "secret.txt", SECRET)


def point_bytes(point):
    """Every byte a point holds (its files' data and its symlinks' targets)."""
    _, entries, data = read_point(point)
    return b"".join(data.values()) + b"".join(e.get("target", "").encode() for e in entries.values())


# -- prefixes and keys ---------------------------------------------------------------------------------

BAD_PREFIXES = [
    "../../../../tmp/x",
    "../x",
    "a/../../b",
    "/etc",
    "a//b",
    "./a",
    "a/./b",
    "..",
    "a/\x00b",
    "x" * 300,
]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_a_prefix_that_leaves_its_bucket_is_refused_on_every_path(prefix, account, region, admin_client):
    # rule T1: the service, the admin form and the commands refuse it, and nothing is registered
    bucket = create_bucket("local", region)
    before = (RestoreTarget.objects.count(), BackupSource.objects.count())
    with pytest.raises(ValidationError) as refused:
        make_target(account, region, "oss-bucket", bucket, prefix=prefix)
    assert "prefix" in refused.value.message_dict
    with pytest.raises(ValidationError):
        make_source(account, region, "oss", bucket=bucket, prefix=prefix)
    with pytest.raises(CommandError):
        call_command(
            "restore", "target", "create", "--account", account.slug, "--region", region.code,
            "--kind", "oss-bucket", "--location", bucket, "--prefix", prefix, "--name", "t",
        )  # fmt: skip
    response = admin_client.post(
        "/admin/restore/restoretarget/add/",
        {"account": account.pk, "region": region.pk, "kind": "oss-bucket", "name": "t", "location": bucket,
         "prefix": prefix, "network": "internet"},
    )  # fmt: skip
    assert response.status_code == 200  # the form again, with its error
    attack((RestoreTarget.objects.count(), BackupSource.objects.count()) != before)


def test_a_target_prefix_stored_before_the_rule_never_leads_a_restore_out(tmp_path, account, region, vault):
    # rule T1: a target row with `..` in its prefix (written before the rule held) is refused at run
    src = write(tmp_path / "src" / "f.txt", b"data\n").parent
    point = run_backup(vault, make_source(account, region, "ecs-file", path=src)).point
    bucket_src = create_bucket("local", region)
    write(local_bucket_dir(region, bucket_src) / "k" / "obj.txt", b"object\n")
    oss_point = run_backup(vault, make_source(account, region, "oss", bucket=bucket_src)).point
    target = make_target(account, region, "oss-bucket", create_bucket("local", region))
    RestoreTarget.objects.filter(pk=target.pk).update(prefix="../../../../../../../../tmp/escape-" + target.name)
    target.refresh_from_db()
    with pytest.raises(ValidationError, match="prefix"):
        restore_services.start_restore(actor=None, point=oss_point, target=target)
    job = RestoreJob.objects.create(account=account, vault=vault, point=oss_point, point_label=oss_point.id,
                                    target=target)  # fmt: skip
    restore_services.run_restore_job(job.pk)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.FAILED and "prefix" in job.error
    attack(os.path.exists("/tmp/escape-" + target.name))
    assert point is not None


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "a//b", "", "a/\x00"])
def test_a_local_bucket_refuses_keys_outside_its_root(key, region, tmp_path):
    # rule T1: put, open, check: nothing outside the bucket's directory
    name = create_bucket("local", region)
    bucket = objectstore.oss_bucket(region, name)
    payload = write(tmp_path / "payload", b"payload")
    escaped = False
    for call in (lambda: bucket.put_file(key, payload), lambda: bucket.open(key), lambda: bucket.exists(key)):
        with pytest.raises(objectstore.ObjectStoreError):
            call()
    escaped = any(p.name == "outside" for p in local_bucket_dir(region, name).parent.parent.rglob("outside"))
    attack(escaped)


def test_a_link_in_a_local_bucket_is_not_an_object(region, victim):
    # rule T1: a link inside a bucket's directory is neither listed nor opened
    name = create_bucket("local", region)
    root = local_bucket_dir(region, name)
    os.symlink(victim, root / "link.txt")
    os.symlink(victim.parent, root / "dirlink")
    write(root / "real.txt", b"real")
    bucket = objectstore.oss_bucket(region, name)
    assert [o["key"] for o in bucket.list_objects()] == ["real.txt"]
    with pytest.raises(FileNotFoundError):
        bucket.open("link.txt")
    with pytest.raises(objectstore.ObjectStoreError):
        bucket.open("dirlink/secret.txt")
    attack(bucket.exists("link.txt"))


def test_keys_with_dot_dot_in_a_source_bucket_are_skipped_and_reported(s3_stores, account, region, vault):
    # rule T1: a key of the tenant's own bucket that would lead out of a restore target is never followed
    name = create_bucket("s3", region)
    client = s3_raw_client()
    for key in ("good/a.txt", "good/../../escape.txt", "/abs.txt", "good//b.txt", "./c.txt"):
        client.put_object(Bucket=name, Key=key, Body=b"body of " + key.encode())
    job = run_backup(vault, make_source(account, region, "oss", bucket=name))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    _, entries, _ = read_point(job.point)
    assert sorted(entries) == ["good/a.txt"]
    skipped = sorted(w["path"] for w in job.warnings)
    assert skipped == sorted(["good/../../escape.txt", "/abs.txt", "good//b.txt", "./c.txt"])
    attack(set(entries) - {"good/a.txt"})


# -- sources read through links swapped in mid-backup ----------------------------------------------------


def swap_when_reading(monkeypatch, name, swap):
    """Run `swap()` once, when the engine is about to read the bytes of the file `name`."""
    original = engine.chunk_stream
    done = []

    def wrapper(writer, stream, on_bytes):
        if not done and str(getattr(stream, "name", "")).endswith(name):
            done.append(swap())
        return original(writer, stream, on_bytes)

    monkeypatch.setattr(engine, "chunk_stream", wrapper)
    return done


def test_a_file_swapped_for_a_link_between_scan_and_read_is_not_followed(
    monkeypatch, tmp_path, account, region, vault, victim
):
    # rule T1: b.txt is listed as a file, then replaced by a link to another tenant's file before it is read
    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    write(src / "b.txt", b"second\n")

    def swap():
        (src / "b.txt").unlink()
        os.symlink(victim, src / "b.txt")

    assert swap_when_reading(monkeypatch, "a.txt", swap) is not None
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert [w["path"] for w in job.warnings] == ["b.txt"]
    attack(SECRET in point_bytes(job.point))


def test_a_directory_swapped_for_a_link_mid_backup_is_not_entered(
    monkeypatch, tmp_path, account, region, vault, victim
):
    # rule T1: the tenant swaps a directory of the source for a link to another tenant's directory
    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    write(src / "docs" / "note.txt", b"mine\n")

    def swap():
        (src / "docs" / "note.txt").unlink()
        (src / "docs").rmdir()
        os.symlink(victim.parent, src / "docs")

    swap_when_reading(monkeypatch, "a.txt", swap)
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    attack(SECRET in point_bytes(job.point))


def test_the_source_root_swapped_for_a_link_after_the_check_is_refused(
    monkeypatch, tmp_path, account, region, vault, victim, settings
):
    # rule T1: the root's path is checked, then (in the window before it is opened) a directory on the
    # way is swapped for a link to another tenant's directory: what was opened is checked, and refused
    src = tmp_path / "src"
    write(src / "private" / "secret.txt", b"mine\n")
    source = make_source(account, region, "ecs-file", path=src / "private")
    from vaults.services import backups

    real_refusal = backups.backup_refusal

    def refusal_then_swap(vault, source):
        reason = real_refusal(vault, source)
        if not src.is_symlink():  # once: at the job's own check (start_backup checked too)
            os.rename(src, tmp_path / "src-moved")
            os.symlink(victim.parent.parent, src)  # src/private -> the other tenant's private directory
        return reason

    monkeypatch.setattr(backups, "backup_refusal", refusal_then_swap)
    job = run_backup(vault, source)
    assert job.status == BackupJob.Status.FAILED and "not under this account's directories" in job.error
    attack(job.point is not None)


def test_the_master_secret_and_the_database_are_never_read(tmp_path, account, region, vault, settings):
    # rule T3: a link in the tenant's tree to the service's secret and data is kept as a link, never read
    assert settings.MASTER_SECRET_FILE.is_file()  # made for the vault's key
    src = tmp_path / "src"
    write(src / "a.txt", b"x")
    os.symlink(settings.MASTER_SECRET_FILE, src / "master.key")
    os.symlink(settings.DATA_DIR, src / "data")
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    secret = settings.MASTER_SECRET_FILE.read_bytes()
    attack(secret in point_bytes(job.point))


def test_a_fifo_swapped_in_mid_backup_neither_blocks_nor_is_read(monkeypatch, tmp_path, account, region, vault):
    # rule T1: b.txt becomes a FIFO after the scan; opening it must not block the worker
    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    write(src / "b.txt", b"second\n")

    def swap():
        (src / "b.txt").unlink()
        os.mkfifo(src / "b.txt")

    swap_when_reading(monkeypatch, "a.txt", swap)
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert [w["path"] for w in job.warnings] == ["b.txt"] and "FIFO" in job.warnings[0]["problem"]
    attack("b.txt" in read_point(job.point)[1])


def test_symlink_loops_are_kept_as_links(tmp_path, account, region, vault):
    src = tmp_path / "src"
    write(src / "a.txt", b"x")
    os.symlink("loop-b", src / "loop-a")
    os.symlink("loop-a", src / "loop-b")
    os.symlink(".", src / "self")
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    _, entries, _ = read_point(job.point)
    assert {p: e["type"] for p, e in entries.items()} == {
        "a.txt": "file", "loop-a": "symlink", "loop-b": "symlink", "self": "symlink",
    }  # fmt: skip
    attack(False)
    loop_root = tmp_path / "looproot"
    os.symlink(loop_root, loop_root)
    with pytest.raises(ValidationError):
        make_source(account, region, "ecs-file", path=loop_root)
    attack(False)


@pytest.mark.parametrize(
    "path",
    ["/", "/proc", "/proc/self/environ", "/proc/self", "/sys", "/dev", "/dev/shm", "/etc/shadow", "/root"],
)
def test_system_areas_and_foreign_paths_are_never_sources(path, account, region, settings):
    # rule T3: the host's system areas, whatever the settings; other places only where allowed (T2)
    before = BackupSource.objects.count()
    for single_tenant, roots in ((True, []), (False, settings.BACKUP_PATH_ROOTS), (False, [])):
        settings.SINGLE_TENANT, settings.BACKUP_PATH_ROOTS = single_tenant, roots
        system = path in ("/", "/proc", "/proc/self/environ", "/proc/self", "/sys", "/dev", "/dev/shm")
        if not system and single_tenant:
            continue  # one tenant may back up what the worker can read
        with pytest.raises(ValidationError):
            make_source(account, region, "ecs-file", path=path)
        with pytest.raises(ValidationError):
            make_target(account, region, "ecs-instance", path)
    attack(BackupSource.objects.count() != before or RestoreTarget.objects.exists())


def test_without_roots_a_service_of_several_tenants_refuses_every_path(tmp_path, account, region, settings):
    # rule T2: on DATABASE_URL with no BACKUP_PATH_ROOTS, nobody's paths are accepted
    settings.BACKUP_PATH_ROOTS, settings.SINGLE_TENANT = [], False
    with pytest.raises(ValidationError, match="BACKUP_PATH_ROOTS"):
        make_source(account, region, "ecs-file", path=tmp_path / "data")
    attack(BackupSource.objects.exists())


@pytest.mark.parametrize(
    "path",
    ["{home}/../globex/private", "{home}/../../tenants/globex", "{other}/private", "{home}/\u202e/../../globex"],
)
def test_dot_dot_and_unicode_do_not_reach_another_tenant(path, tmp_path, other_tmp_path, victim, account, region):
    before = BackupSource.objects.count()
    with pytest.raises(ValidationError):
        make_source(account, region, "ecs-file", path=path.format(home=tmp_path, other=other_tmp_path))
    attack(BackupSource.objects.count() != before)


def test_a_very_long_path_is_refused_cleanly(tmp_path, account, region):
    with pytest.raises(ValidationError):
        make_source(account, region, "ecs-file", path=str(tmp_path) + "/" + "d" * 5000)
    attack(BackupSource.objects.exists())


# -- restores written through links that appear in the target -----------------------------------------------


@pytest.fixture
def tree_point(tmp_path, account, region, vault):
    src = tmp_path / "src"
    write(src / "a" / "1.txt", b"one\n")
    write(src / "a" / "2.txt", b"two\n")
    write(src / "a" / "3.txt", b"three\n")
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    return job.point


def swap_when_restoring(monkeypatch, path, swap):
    original = PointReader.iter_file
    done = []

    def iter_file(self, entry):
        if not done and entry["path"] == path:
            done.append(swap())
        return original(self, entry)

    monkeypatch.setattr(PointReader, "iter_file", iter_file)


@pytest.mark.parametrize("existing", ["fail", "skip", "overwrite"])
def test_a_directory_of_the_target_swapped_for_a_link_mid_restore(
    existing, monkeypatch, tmp_path, other_tmp_path, account, region, tree_point
):
    # rule T1: after a/ is made, the tenant swaps it for a link to another tenant's directory
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = other_tmp_path / "outside"
    outside.mkdir()

    def swap():
        os.rename(dest / "a", tmp_path / "a-moved")
        os.symlink(outside, dest / "a")

    swap_when_restoring(monkeypatch, "a/2.txt", swap)
    job = restore(tree_point, make_target(account, region, "ecs-instance", dest), existing=existing)
    assert job.status == RestoreJob.Status.FAILED and "a/" in job.error
    attack(list(outside.iterdir()))


def test_a_file_of_the_target_swapped_for_a_link_is_replaced_not_followed(
    monkeypatch, tmp_path, account, region, tree_point, victim
):
    dest = tmp_path / "dest"
    write(dest / "a" / "3.txt", b"old\n")

    def swap():
        (dest / "a" / "3.txt").unlink()
        os.symlink(victim, dest / "a" / "3.txt")

    swap_when_restoring(monkeypatch, "a/1.txt", swap)
    job = restore(tree_point, make_target(account, region, "ecs-instance", dest), existing="overwrite")
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert (dest / "a" / "3.txt").read_bytes() == b"three\n" and not (dest / "a" / "3.txt").is_symlink()
    attack(victim.read_bytes() != SECRET)


def test_the_target_root_swapped_for_a_link_is_refused(tmp_path, other_tmp_path, account, region, tree_point):
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, region, "ecs-instance", dest)
    job = restore_services.start_restore(actor=None, point=tree_point, target=target)
    dest.rmdir()  # while the job waits in the queue
    os.symlink(other_tmp_path, dest)
    restore_services.run_restore_job(job.pk)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.FAILED
    attack(any(other_tmp_path.iterdir()))


@pytest.mark.parametrize("path", ["a/\x00b", ".", "..", "a/../../x", "/etc/x", "a//b", ""])
def test_a_manifest_entry_with_an_unsafe_path_is_refused_with_a_message(path):
    # rule T1: select_entries refuses it by name, without an unexpected error
    with pytest.raises(restore_services.RestoreFailed, match="Refusing a path of the point"):
        restore_writer.select_entries([{"path": path, "type": "file", "size": 0}], "", [])
    attack(False)


def test_restore_into_the_service_data_is_refused(account, region, settings, tree_point):
    for where in (settings.OBJECT_STORE["root"], str(settings.MASTER_SECRET_FILE.parent), "/proc/self"):
        with pytest.raises(ValidationError):
            make_target(account, region, "ecs-instance", where)
    attack(RestoreTarget.objects.exists())
    assert stat.S_ISDIR(os.stat(settings.OBJECT_STORE["root"]).st_mode)


# -- found by an attacker's review ------------------------------------------------------------------------


def test_a_restore_gives_back_permissions_never_privileges(tmp_path, account, region, vault):
    # the worker may run as root: a setuid or setgid file of the point is restored without those bits
    src = tmp_path / "src"
    write(src / "bin" / "tool", b"#!/bin/sh\nid\n", mode=0o6755)
    os.chmod(src / "bin", 0o2755)
    point = run_backup(vault, make_source(account, region, "ecs-file", path=src)).point
    dest = tmp_path / "dest"
    dest.mkdir()
    job = restore(point, make_target(account, region, "ecs-instance", dest))
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert stat.S_IMODE(os.stat(dest / "bin" / "tool").st_mode) == 0o755
    attack(os.stat(dest / "bin" / "tool").st_mode & (stat.S_ISUID | stat.S_ISGID))


def test_a_hard_link_to_another_owners_file_is_not_read(tmp_path, account, region, vault, victim):
    # rule T1: a second name for a file the tenant does not own (made here as root, as an owner could not)
    os.chown(victim, 65534, 65534)
    src = tmp_path / "src"
    write(src / "a.txt", b"mine\n")
    os.link(victim, src / "b.txt")
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert [(w["path"], "hard link" in w["problem"]) for w in job.warnings] == [("b.txt", True)]
    one = tmp_path / "single"
    os.link(victim, one)
    single = run_backup(vault, make_source(account, region, "ecs-file", path=one))  # a single-file source
    assert single.status == BackupJob.Status.FAILED and "hard link" in single.error
    attack(SECRET in point_bytes(job.point) or single.point is not None)


def test_a_file_that_keeps_growing_in_the_target_is_not_read_for_ever(tmp_path):
    # the check of a file already there reads what the manifest says it holds, and no more
    big = tmp_path / "sparse"
    with open(big, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes
    fd = os.open(big, os.O_RDONLY)
    try:
        assert restore_writer._file_hash(fd, 1 << 20) is None  # longer than the entry: not the entry
    finally:
        os.close(fd)
    attack(False)


def test_a_directory_moved_away_during_a_restore_fails_the_job_with_its_path(
    monkeypatch, tmp_path, account, region, tree_point
):
    dest = tmp_path / "dest"
    dest.mkdir()
    swap_when_restoring(monkeypatch, "a/3.txt", lambda: os.rename(dest / "a", tmp_path / "a-away"))
    job = restore(tree_point, make_target(account, region, "ecs-instance", dest))
    assert job.status == RestoreJob.Status.FAILED
    assert job.error.startswith("a") and "Unexpected" not in job.error
    attack(False)


def test_a_socket_swapped_in_mid_backup_is_skipped(monkeypatch, tmp_path, account, region, vault):
    import socket

    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    write(src / "b.txt", b"second\n")
    sock = socket.socket(socket.AF_UNIX)

    def swap():
        (src / "b.txt").unlink()
        sock.bind(str(src / "b.txt"))

    swap_when_reading(monkeypatch, "a.txt", swap)
    try:
        job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    finally:
        sock.close()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert [w["path"] for w in job.warnings] == ["b.txt"]
    attack(False)


def test_a_very_deep_tree_is_cut_and_reported_not_a_crash(tmp_path, account, region, vault):
    from vaults.dataplane.tenantfs import MAX_DEPTH

    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(MAX_DEPTH + 100):  # made relative to the last one: deeper than PATH_MAX
            os.mkdir("d", dir_fd=fd)
            fd, old = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        os.write(os.open("deepest.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), b"deep")
    finally:
        os.close(fd)
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert any("nested deeper" in w["problem"] for w in job.warnings)
    attack(False)


def test_a_root_whose_real_path_is_too_long_is_refused_clearly(tmp_path, account, region, vault):
    # a short registered name can lead, through the tenant's own links, to a directory PATH_MAX cannot name
    names = [f"{i:02d}" + "x" * 240 for i in range(20)]
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:  # made relative to the last one: their real path is ~4,900 bytes
            os.mkdir(name, dir_fd=fd)
            fd, old = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        os.mkdir("inner", dir_fd=fd)
    finally:
        os.close(fd)
    os.symlink("/".join(names[:10]), tmp_path / "l1")
    os.symlink("/".join(names[10:]), tmp_path / "l1" / "l2")
    job = run_backup(vault, make_source(account, region, "ecs-file", path=tmp_path / "l1" / "l2" / "inner"))
    assert job.status == BackupJob.Status.FAILED and "cannot be resolved" in job.error
    attack(job.point is not None)


def test_long_paths_back_up_and_restore(tmp_path, account, region, vault):
    # paths of more than 1,024 bytes in a tree, and names near 255 bytes whose temporary names would clash
    src = tmp_path / "src"
    deep = src.joinpath(*["n" * 200] * 6)
    write(deep / "f.txt", b"far down\n")
    write(src / ("y" * 250), b"one\n")
    write(src / ("y" * 251), b"two\n")
    point = run_backup(vault, make_source(account, region, "ecs-file", path=src)).point
    dest = tmp_path / "dest"
    dest.mkdir()
    job = restore(point, make_target(account, region, "ecs-instance", dest))
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert (dest.joinpath(*["n" * 200] * 6) / "f.txt").read_bytes() == b"far down\n"
    assert (dest / ("y" * 250)).read_bytes() == b"one\n" and (dest / ("y" * 251)).read_bytes() == b"two\n"
    attack(False)


@pytest.mark.parametrize("name", [".acme-b.uploads", "-x-", "a..b", "b.", "UP"])
def test_bucket_names_follow_the_s3_rule(name, account, region):
    with pytest.raises(ValidationError):
        from vaults import services

        services.assign_bucket(actor=None, account=account, region=region, name=name)
    attack(False)


@pytest.mark.parametrize("existing", ["skip", "overwrite"])
def test_a_fifo_swapped_into_the_target_mid_restore_never_blocks_it(
    existing, monkeypatch, tmp_path, account, region, tree_point
):
    # the check of what is already there opens it with O_NONBLOCK and reads only a regular file
    dest = tmp_path / "dest"
    write(dest / "a" / "3.txt", b"three\n")

    def swap():
        (dest / "a" / "3.txt").unlink()
        os.mkfifo(dest / "a" / "3.txt")

    swap_when_restoring(monkeypatch, "a/1.txt", swap)
    job = restore(tree_point, make_target(account, region, "ecs-instance", dest), existing=existing)
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    is_fifo = stat.S_ISFIFO(os.lstat(dest / "a" / "3.txt").st_mode)
    assert is_fifo == (existing == "skip")
    attack(False)
