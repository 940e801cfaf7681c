"""One lifecycle for backups, restores and verifications (console/jobs.py): one upkeep over every kind, an
attempt that was given up for lost cannot finish later, and no kind leaves a job running after an error."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console import jobs
from console.jobs import HEARTBEAT_STALE, JobLost
from console.models import AuditLog, JobStatus
from console.tasks import job_upkeep_task
from restore import services as restore_services
from restore.models import RestoreJob
from tests.restore.conftest import make_target
from tests.vaults.conftest import make_source, write
from vaults import services
from vaults.models import BackupJob, BackupPoint, Vault, VerifyRun


@pytest.fixture
def ready(make_vault, account, region, tmp_path):
    vault = services.initialize_vault_storage(make_vault("v").id)
    write(tmp_path / "src" / "a.txt", b"a\n" * 1000)
    source = make_source(account, region, "ecs-file", path=tmp_path / "src")
    return vault, source


def test_every_kind_of_job_is_registered_once():
    names = [kind.model.__name__ for kind in jobs.KINDS]
    assert sorted(names) == ["BackupJob", "RestoreJob", "VerifyRun"]


def test_one_upkeep_fails_the_lost_jobs_of_every_kind(no_queue, monkeypatch, ready, account, region, tmp_path):
    vault, source = ready
    point = services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    monkeypatch.setattr(jobs, "enqueue", lambda kind, pk: None)
    backup = services.start_backup(actor=None, vault=vault, source=source)
    (tmp_path / "dest").mkdir()
    restore = restore_services.start_restore(
        actor=None, point=point, target=make_target(account, region, "ecs-instance", tmp_path / "dest")
    )
    verify = services.start_verify(actor=None, vault=vault)
    dead = timezone.now() - 2 * HEARTBEAT_STALE
    for model, pk in ((BackupJob, backup.pk), (RestoreJob, restore.pk), (VerifyRun, verify.pk)):
        model.objects.filter(pk=pk).update(status=JobStatus.RUNNING, heartbeat=dead)
    job_upkeep_task()
    assert BackupJob.objects.get(pk=backup.pk).error.startswith("The worker running this job stopped")
    assert RestoreJob.objects.get(pk=restore.pk).error.startswith("The worker running this restore stopped")
    assert VerifyRun.objects.get(pk=verify.pk).error.startswith("The worker running this verification stopped")
    for model in (BackupJob, RestoreJob, VerifyRun):
        assert model.objects.filter(status=JobStatus.RUNNING).count() == 0
    assert AuditLog.objects.filter(outcome="failed", detail__reason="worker lost").count() == 3


def test_an_attempt_taken_over_cannot_finish_or_commit(no_queue, ready):
    vault, source = ready
    job = services.start_backup(actor=None, vault=vault, source=source)
    first = jobs.claim(services.BACKUP, job.pk)
    BackupJob.objects.filter(pk=job.pk).update(heartbeat=timezone.now() - 2 * HEARTBEAT_STALE)
    second = jobs.claim(services.BACKUP, job.pk)  # its message again, its first worker silent: taken over
    assert second is not None and second.attempt != first.attempt
    with pytest.raises(JobLost):
        jobs.beat(first, bytes_done=1)
    with pytest.raises(JobLost):
        jobs.finish(services.BACKUP, first, JobStatus.SUCCEEDED)
    from vaults.services.backups import _run

    with pytest.raises(JobLost):
        _run(first)  # the whole backup of the first attempt: nothing of it lands
    assert not BackupPoint.objects.filter(vault=vault).exists()
    point = _run(second)
    assert BackupJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED and point.vault_id == vault.id


def test_a_verification_whose_keys_cannot_be_read_fails_at_once_with_the_reason(no_queue, ready):
    # the drift of the three copies of the lifecycle: a key-service error left a verification running
    vault, source = ready
    services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    Vault.objects.filter(pk=vault.pk).update(wrapped_data_key=b"not a wrapped key at all")
    run = services.start_verify(actor=None, vault=vault)
    services.run_verify(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and run.error and run.finished is not None
    assert AuditLog.objects.filter(action="verify_vault", outcome="failed", detail__reason=run.error).exists()


def test_a_late_message_of_a_finished_job_does_nothing(no_queue, ready):
    vault, source = ready
    job = services.start_backup(actor=None, vault=vault, source=source)
    services.run_backup_job(job.pk)
    finished = BackupJob.objects.get(pk=job.pk)
    assert services.run_backup_job(job.pk) is None
    again = BackupJob.objects.get(pk=job.pk)
    assert (again.status, again.attempt, again.finished) == (finished.status, finished.attempt, finished.finished)
    assert timezone.now() - again.finished < timedelta(minutes=1)


def test_the_tasks_sent_by_name_exist():
    # services send tasks by name (the tasks modules import the services, not the other way round)
    from console.celery import app

    app.loader.import_default_modules()
    names = {kind.task for kind in jobs.KINDS}
    names |= {"vaults.tasks.initialize_vault_storage_task", "replication.tasks.sync_pair_task"}
    assert names <= set(app.tasks)
