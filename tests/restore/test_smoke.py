"""A first round trip: back up a tree, restore it into a prepared directory, compare (rule S4)."""

import os

from restore import services
from restore.models import RestoreJob
from vaults import services as vault_services


def test_restore_round_trip(make_vault, account, region, tmp_path):
    vault = vault_services.initialize_vault_storage(make_vault("r").id)
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f.bin").write_bytes(os.urandom(300_000))
    (src / "top.txt").write_bytes(b"hello\n" * 1000)
    os.symlink("top.txt", src / "link")
    os.chmod(src / "top.txt", 0o640)
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="s", path=str(src)
    )
    point = vault_services.run_backup_job(vault_services.start_backup(actor=None, vault=vault, source=source).pk)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = services.create_restore_target(
        actor=None, account=account, region=region, kind="ecs-instance", name="ecs", location=str(dest)
    )
    job = services.run_restore_job(services.start_restore(actor=None, point=point, target=target).pk)
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert (dest / "a" / "b" / "f.bin").read_bytes() == (src / "a" / "b" / "f.bin").read_bytes()
    assert (dest / "top.txt").read_bytes() == (src / "top.txt").read_bytes()
    assert os.readlink(dest / "link") == "top.txt"
    assert (dest / "top.txt").stat().st_mode & 0o777 == 0o640
    assert (dest / "top.txt").stat().st_mtime_ns == (src / "top.txt").stat().st_mtime_ns
    assert job.report["files_written"] == 2 and job.files_verified == 2
