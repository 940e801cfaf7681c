"""Backup jobs: a point becomes visible only once all its data is stored (rule P3), failures are clear
and leave nothing half done, and backups are refused where they cannot go (rule R9, vault states,
account and region of the source).

Races are made deterministic by wrapping `vaults.dataplane.backup.chunk_stream` (the function that reads one
file's bytes): the wrapper changes the tree at a known moment of the read, then reads as usual.
"""

import os

import pytest
from django.core.exceptions import ValidationError

from console.models import AuditLog, Region
from tests.vaults.conftest import (
    KiB,
    RawStore,
    assert_point_matches,
    backup_ok,
    build_tree,
    make_source,
    random_bytes,
    read_point,
    run_backup,
    snapshot,
    write,
)
from vaults import services
from vaults.dataplane import backup as engine
from vaults.dataplane.objectstore import LocalRegionStore, ObjectStoreError
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint, PointChunk, Vault, VaultStatus, VaultType

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]


def only_marker(vault):
    """The vault's store area holds nothing but its marker: no pack, no manifest."""
    return RawStore(vault.region).keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]


def manifests_of(vault):
    return RawStore(vault.region).keys(vault.storage_prefix + "manifests/")


def wrap_chunk_stream(monkeypatch, before_read):
    """Call before_read(path) just before each file's bytes are read by the engine."""
    original = engine.chunk_stream

    def wrapper(writer, stream, on_bytes):
        before_read(getattr(stream, "name", None))
        return original(writer, stream, on_bytes)

    monkeypatch.setattr(engine, "chunk_stream", wrapper)


# -- rule P3: visible only when complete ------------------------------------------------------------


def test_point_row_appears_only_once_its_data_is_stored(monkeypatch, tmp_path, account, region, normal_vault):
    # rule P3: while files are read and while packs and the manifest are written, there is no point row;
    # it exists once the job has succeeded, and every object it needs is in the store
    root = build_tree(tmp_path / "src", seed=30)
    vault = normal_vault()
    seen = []
    wrap_chunk_stream(monkeypatch, lambda path: seen.append(("read", BackupPoint.objects.count())))
    original_put = LocalRegionStore.put

    def put(self, key, data):
        seen.append(("put " + key.split("/")[2], BackupPoint.objects.count()))
        return original_put(self, key, data)

    monkeypatch.setattr(LocalRegionStore, "put", put)

    job = backup_ok(vault, make_source(account, region, "ecs-file", path=root))

    assert {what for what, _ in seen} == {"read", "put packs", "put manifests"}
    assert all(count == 0 for _, count in seen), seen
    assert seen[-1][0] == "put manifests"
    assert list(BackupPoint.objects.filter(vault=vault)) == [job.point]
    keys = set(RawStore(region).keys(vault.storage_prefix))
    assert job.point.manifest_key in keys
    assert set(PointChunk.objects.filter(point=job.point).values_list("chunk__pack__key", flat=True).distinct()) <= keys


def test_failed_commit_leaves_no_point_and_no_manifest(monkeypatch, tmp_path, account, region, normal_vault):
    # rule P3: a failure inside the commit rolls the point back and removes its manifest object; the
    # next run commits, reusing the chunks the failed run stored
    root = build_tree(tmp_path / "src", seed=31)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)

    def broken(vault):
        raise ObjectStoreError("simulated failure during the commit")

    monkeypatch.setattr("vaults.services.backups.refresh_data_size", broken)
    job = run_backup(vault, source)
    assert job.status == BackupJob.Status.FAILED and "simulated failure" in job.error
    assert job.point is None
    assert not BackupPoint.objects.filter(vault=vault).exists() and not PointChunk.objects.exists()
    assert manifests_of(vault) == []
    monkeypatch.undo()

    again = backup_ok(vault, source)
    assert again.bytes_stored == 0
    assert_point_matches(again.point, snapshot(root))


def test_missing_source_path_fails_with_the_path(tmp_path, account, region, normal_vault):
    # rule P3: a source path that does not exist fails the job, naming the path; no point, no data
    vault = normal_vault()
    missing = tmp_path / "no" / "such" / "dir"
    job = run_backup(vault, make_source(account, region, "on-premises-file", path=missing))
    assert job.status == BackupJob.Status.FAILED
    assert str(missing) in job.error
    assert job.point is None and job.finished is not None
    assert not BackupPoint.objects.filter(vault=vault).exists()
    assert only_marker(vault)
    assert AuditLog.objects.filter(action="run_backup", object_id=str(job.pk), outcome="failed").exists()


def test_unreadable_source_path_fails_with_the_path(tmp_path, account, region, normal_vault):
    # rule P3: a path nobody can read as a directory (here: a path under a regular file, since the tests
    # run as root and permission bits do not stop root) fails the job with the path in the error
    vault = normal_vault()
    plain = write(tmp_path / "plain.txt", b"a file, not a directory")
    job = services.start_backup(
        actor=None, vault=vault, source=make_source(account, region, "ecs-file", path=plain / "sub")
    )
    raised = None
    try:
        services.run_backup_job(job.pk)
    except Exception as exc:  # noqa: BLE001 - reported in the assertion below
        raised = exc
    job.refresh_from_db()
    assert (job.status, raised) == (BackupJob.Status.FAILED, None), f"job left {job.status!r}, {raised!r} escaped"
    assert str(plain / "sub") in job.error
    assert not BackupPoint.objects.filter(vault=vault).exists()
    assert only_marker(vault)


def test_fifo_source_fails_and_fifo_in_a_tree_is_skipped_with_a_warning(tmp_path, account, region, normal_vault):
    # rule P3: a source that is neither a directory nor a file fails clearly; a FIFO inside a tree is
    # skipped (never opened, so the backup cannot hang on it) and recorded as a warning
    vault = normal_vault()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    job = run_backup(vault, make_source(account, region, "ecs-file", path=fifo))
    assert job.status == BackupJob.Status.FAILED and str(fifo) in job.error
    assert not BackupPoint.objects.filter(vault=vault).exists()

    root = build_tree(tmp_path / "src", seed=32)
    os.mkfifo(root / "a" / "pipe")
    expected = snapshot(root)
    del expected["a/pipe"]
    job = backup_ok(vault, make_source(account, region, "ecs-file", path=root))
    assert [w["path"] for w in job.warnings] == ["a/pipe"]
    assert_point_matches(job.point, expected)


def test_file_vanishing_before_it_is_read_is_a_warning(monkeypatch, tmp_path, account, region, normal_vault):
    # rule P3: a file deleted between the scan and its read is recorded in job.warnings; the point is still
    # complete and consistent for everything else
    root = build_tree(tmp_path / "src", seed=33)
    write(root / "zz-vanishing.bin", random_bytes(300 * KiB, 34))
    expected = snapshot(root)
    del expected["zz-vanishing.bin"]

    def delete_it(path):
        if path and path.endswith("big.bin") and (root / "zz-vanishing.bin").exists():
            (root / "zz-vanishing.bin").unlink()  # big.bin is read before zz-vanishing.bin (sorted)

    wrap_chunk_stream(monkeypatch, delete_it)
    vault = normal_vault()
    job = backup_ok(vault, make_source(account, region, "ecs-file", path=root))

    assert job.warnings == [{"path": "zz-vanishing.bin", "problem": "vanished before it could be read"}]
    assert_point_matches(job.point, expected)
    assert verify_vault(vault)["problems"] == []


@pytest.fixture
def growing_file(monkeypatch, tmp_path):
    """A tree with a log file that grows while the backup reads it."""
    root = build_tree(tmp_path / "src", seed=35)
    log = write(root / "app.log", b"line\n" * 1000)

    def append(path):
        if path and path.endswith("app.log"):
            with open(log, "ab") as f:
                f.write(b"appended while the backup ran\n")

    wrap_chunk_stream(monkeypatch, append)
    return root


def test_changing_file_with_fail_on_change_fails_with_no_point(growing_file, account, region, normal_vault):
    # rule P3: with fail_on_change, a file that changes while it is read fails the job; no point is left
    vault = normal_vault()
    job = run_backup(vault, make_source(account, region, "ecs-file", path=growing_file), fail_on_change=True)
    assert job.status == BackupJob.Status.FAILED
    assert "app.log" in job.error
    assert job.point is None and not BackupPoint.objects.filter(vault=vault).exists()
    assert manifests_of(vault) == []


def test_changing_file_without_fail_on_change_is_a_warning(growing_file, account, region, normal_vault):
    # rule P3: by default the change is recorded as a warning and the point is consistent: the file's entry
    # describes exactly the bytes that were read
    vault = normal_vault()
    job = backup_ok(vault, make_source(account, region, "ecs-file", path=growing_file))
    assert job.warnings == [{"path": "app.log", "problem": "changed while it was being read"}]
    _, entries, data = read_point(job.point)
    assert data["app.log"] == (growing_file / "app.log").read_bytes()
    assert entries["app.log"]["size"] == len(data["app.log"])
    assert verify_vault(vault)["problems"] == []


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["replication-target", "error", "initializing", "source-of-another-account", "source-of-another-region"]
)
def test_start_backup_refusals(
    case, tmp_path, other_tmp_path, account, other_account, region, make_vault, normal_vault
):
    # rule R9 (a Replication Target vault is read-only), rule V2 (only a Normal vault takes backups),
    # rule A1 (no source of another account), and one region per backup (source and vault in the same region)
    source_account, source_region = account, region
    if case == "replication-target":
        vault = normal_vault("target", vault_type=VaultType.REPLICATION_TARGET)
        assert vault.status == VaultStatus.NORMAL
    elif case == "error":
        vault = normal_vault()
        Vault.objects.filter(pk=vault.pk).update(status=VaultStatus.ERROR)
        vault.refresh_from_db()
    elif case == "initializing":
        vault = make_vault()
    else:
        vault = normal_vault()
        if case == "source-of-another-account":
            source_account = other_account
        else:
            source_region = Region.objects.get(code="us-west-1")
    root = build_tree((other_tmp_path if source_account == other_account else tmp_path) / "src", seed=36)
    source = make_source(source_account, source_region, "ecs-file", path=root)

    with pytest.raises(ValidationError) as refused:
        run_backup(vault, source)

    reason = " ".join(refused.value.messages)
    expected = {
        "replication-target": "read-only",
        "error": "Error",
        "initializing": "Initializing",
        "source-of-another-account": "another account",
        "source-of-another-region": Region.objects.get(code="us-west-1").name,
    }[case]
    assert expected in reason
    assert not BackupJob.objects.exists()
    assert not BackupPoint.objects.exists()
    audit = AuditLog.objects.get(action="start_backup")
    assert (audit.outcome, audit.object_id, audit.account_id) == (AuditLog.Outcome.REFUSED, vault.id, account.pk)
    assert audit.detail["reason"] == reason


def test_vault_leaving_normal_before_the_job_runs_fails_the_job(tmp_path, account, region, normal_vault):
    # rule V2: the refusal is checked again when the queued job runs; the job fails and leaves no point
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=build_tree(tmp_path / "src", seed=37))
    job = services.start_backup(actor=None, vault=vault, source=source)
    Vault.objects.filter(pk=vault.pk).update(status=VaultStatus.ERROR)
    services.run_backup_job(job.pk)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.FAILED and "Normal" in job.error
    assert not BackupPoint.objects.exists() and only_marker(vault)
