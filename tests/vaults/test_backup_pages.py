"""Backup Sources, Backup Jobs, "Back up now" and point deletion through the console."""

import pytest

from vaults import services
from vaults.models import BackupJob, BackupPoint, BackupSource

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ready_vault(make_vault):
    vault = make_vault("daily")
    return services.initialize_vault_storage(vault.id)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha " * 1000)
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 400)
    return root


def test_register_a_source_in_the_dialog(alice, account, region, tree):
    url = "/regions/cn-hangzhou/backup-sources/create/"
    bad = alice.post(url, {"name": "web", "source_type": "ecs-file", "path": "relative/path"}, **HTMX)
    assert bad.status_code == 422 and "absolute path" in bad.content.decode()
    good = alice.post(url, {"name": "web", "source_type": "ecs-file", "path": str(tree)}, **HTMX)
    assert good["HX-Redirect"] == "/regions/cn-hangzhou/backup-sources/"
    source = BackupSource.objects.get(account=account, region=region)
    assert source.path == str(tree)
    assert str(tree) in alice.get("/regions/cn-hangzhou/backup-sources/").content.decode()


def test_back_up_now_then_the_job_shows_progress_and_the_point(alice, account, region, ready_vault, tree):
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="web", path=str(tree)
    )
    response = alice.post(
        f"/regions/cn-hangzhou/vaults/{ready_vault.id}/backup/", {"source": source.pk, "retention_days": 7}, **HTMX
    )
    assert response["HX-Redirect"] == "/regions/cn-hangzhou/backup-jobs/"
    job = BackupJob.objects.get()
    polling = alice.get("/regions/cn-hangzhou/backup-jobs/", HTTP_HX_TARGET="job-table", **HTMX)
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    services.run_backup_job(job.pk)  # what the worker's task does
    done = alice.get("/regions/cn-hangzhou/backup-jobs/", HTTP_HX_TARGET="job-table", **HTMX)
    point = BackupPoint.objects.get()
    body = done.content.decode()
    assert done.status_code == 286 and "Succeeded" in body and point.id in body and "2 / 2" in body
    detail = alice.get(f"/regions/cn-hangzhou/vaults/{ready_vault.id}/").content.decode()
    assert point.id in detail and "ECS File" in detail


def test_back_up_now_is_refused_for_a_replication_target(alice, make_vault):
    # rule R9
    target = services.initialize_vault_storage(make_vault("rt", vault_type="replication-target").id)
    body = alice.get(f"/regions/cn-hangzhou/vaults/{target.id}/backup/", **HTMX).content.decode()
    assert "read-only" in body and "Start backup" not in body


def test_source_of_another_account_is_not_offered(alice, other_account, region, ready_vault, other_tmp_path):
    theirs = services.create_backup_source(
        actor=None,
        account=other_account,
        region=region,
        source_type="ecs-file",
        name="theirs",
        path=str(other_tmp_path),
    )
    url = f"/regions/cn-hangzhou/vaults/{ready_vault.id}/backup/"
    assert "theirs" not in alice.get(url, **HTMX).content.decode()
    response = alice.post(url, {"source": theirs.pk}, **HTMX)
    assert response.status_code == 422 and not BackupJob.objects.exists()


def test_point_delete_from_the_vault_page_and_lock(alice, account, region, ready_vault, tree):
    # rule L1: under backup lock an unexpired point cannot be deleted by hand
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="web", path=str(tree)
    )
    first = services.run_backup_job(services.start_backup(actor=None, vault=ready_vault, source=source).pk)
    second = services.run_backup_job(services.start_backup(actor=None, vault=ready_vault, source=source).pk)
    url = f"/regions/cn-hangzhou/vaults/{ready_vault.id}/points/{first.id}/delete/"
    assert alice.post(url, **HTMX).status_code == 200
    assert not BackupPoint.objects.filter(pk=first.pk).exists()
    services.enable_backup_lock(actor=None, vault=ready_vault)
    alice.post(f"/regions/cn-hangzhou/vaults/{ready_vault.id}/points/{second.id}/delete/", **HTMX)
    assert BackupPoint.objects.filter(pk=second.pk).exists()
    assert "Backup lock is on" in alice.get(f"/regions/cn-hangzhou/vaults/{ready_vault.id}/").content.decode()


def test_another_accounts_points_and_jobs_are_404(alice, other_account, make_vault, region, other_tmp_path):
    theirs = services.initialize_vault_storage(make_vault("theirs", acct=other_account).id)
    (other_tmp_path / "f.txt").write_bytes(b"theirs\n")
    source = services.create_backup_source(
        actor=None, account=other_account, region=region, source_type="ecs-file", name="s", path=str(other_tmp_path)
    )
    point = services.run_backup_job(services.start_backup(actor=None, vault=theirs, source=source).pk)
    assert alice.post(f"/regions/cn-hangzhou/vaults/{theirs.id}/points/{point.id}/delete/").status_code == 404
    assert alice.get(f"/regions/cn-hangzhou/vaults/{theirs.id}/backup/").status_code == 404
    assert point.id not in alice.get("/regions/cn-hangzhou/backup-jobs/").content.decode()
    assert BackupPoint.objects.filter(pk=point.pk).exists()
