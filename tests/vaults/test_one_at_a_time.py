"""A double click, a repeated request or two racing requests make one backup job and one restore job:
at most one queued or running manual backup per (source, vault), and one restore per target."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from restore import services as restore_services
from restore.models import RestoreJob
from tests.restore.conftest import make_target
from tests.vaults.conftest import make_source, write
from vaults import services
from vaults.models import BackupJob

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ready(make_vault, account, region, tmp_path):
    vault = services.initialize_vault_storage(make_vault("v").id)
    write(tmp_path / "src" / "a.txt", b"a\n")
    source = make_source(account, region, "ecs-file", path=tmp_path / "src")
    return vault, source


def test_a_second_backup_of_the_same_source_and_vault_waits_for_the_first(no_queue, ready):
    vault, source = ready
    first = services.start_backup(actor=None, vault=vault, source=source)
    with pytest.raises(ValidationError, match=f"already queued \\(job {first.pk}\\)"):
        services.start_backup(actor=None, vault=vault, source=source)
    assert BackupJob.objects.count() == 1
    services.run_backup_job(first.pk)
    services.start_backup(actor=None, vault=vault, source=source)  # once it has ended, another may start
    assert BackupJob.objects.count() == 2


def test_a_second_restore_into_the_same_target_waits_for_the_first(
    no_queue, monkeypatch, ready, account, region, tmp_path
):
    vault, source = ready
    point = services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    monkeypatch.setattr("restore.services._enqueue", lambda job_id: None)
    (tmp_path / "dest").mkdir()
    target = make_target(account, region, "ecs-instance", tmp_path / "dest")
    first = restore_services.start_restore(actor=None, point=point, target=target)
    with pytest.raises(ValidationError, match="already queued"):
        restore_services.start_restore(actor=None, point=point, target=target, existing="overwrite")
    assert RestoreJob.objects.count() == 1
    restore_services.run_restore_job(first.pk)
    restore_services.start_restore(actor=None, point=point, target=target, existing="overwrite")
    assert RestoreJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_racing_posts_of_start_backup_make_one_job(no_queue, ready, user):
    # two requests at the same moment, each on its own database connection (PostgreSQL in CI)
    vault, source = ready
    url = f"/regions/{vault.region.code}/vaults/{vault.id}/backup/"
    barrier = threading.Barrier(2)
    statuses = []

    def post():
        client = Client()
        client.force_login(user)
        barrier.wait()
        try:
            statuses.append(client.post(url, {"source": source.pk, "retention_days": ""}, **HTMX).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200, 422], statuses
    assert BackupJob.objects.count() == 1
