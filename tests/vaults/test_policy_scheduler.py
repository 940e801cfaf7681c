"""Rule C2 for real: `celery beat` and a worker, as a deployment runs them. A policy whose next run is due is
dispatched by the periodic task beat sends, and the worker backs up its bound source into a point that keeps
the policy's rules. Nothing is called directly: the test only sets the policy's next run in the past."""

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import BIN, ROOT, wait_until
from tests.vaults.conftest import make_source, write
from vaults.models import BackupJob, BackupPoint, Policy, PolicyRun
from vaults.services import policies


@pytest.fixture
def beat(celery_worker_process, isolated_stores):
    """`celery beat` with the worker's settings: its tasks go to the worker's queue."""
    log = open(isolated_stores / "beat.log", "a")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "console", "beat", "--schedule", str(isolated_stores / "beat-schedule"),
         "--loglevel=INFO"],
        cwd=ROOT, env=celery_worker_process.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    yield proc
    proc.terminate()
    proc.wait(15)


@pytest.mark.worker
def test_beat_and_a_worker_run_a_due_policy_into_a_point(beat, normal_vault, account, region, tmp_path):
    vault = normal_vault("scheduled")
    write(tmp_path / "docs" / "a.txt", b"backed up on schedule\n")
    source = make_source(account, region, "ecs-file", name="docs", path=str(tmp_path / "docs"))
    policy = policies.create_policy(
        actor=None, account=account, region=region, name="nightly", vault=vault, retention_days=30, keep_monthly=3,
        schedule=policies.policy_schedule(weekdays=range(7), times=((2, 0),), zone="Asia/Shanghai"),
    )  # fmt: skip
    policies.bind_source(actor=None, policy=policy, source=source)
    due = timezone.now() - timedelta(minutes=10)  # the scheduler was away: one late run
    Policy.objects.filter(pk=policy.pk).update(next_run=due)

    # beat sends the dispatch every 30 s; the worker runs it, then the backup it queues
    assert wait_until(lambda: BackupPoint.objects.filter(vault=vault).exists(), timeout=120, interval=0.5)
    run = PolicyRun.objects.get(policy=policy)
    assert run.trigger == PolicyRun.Trigger.SCHEDULED and run.scheduled_for == due and run.late_seconds >= 600
    job = BackupJob.objects.get(policy_run=run)
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    point = BackupPoint.objects.get(vault=vault)
    assert point.pk == job.point_id and point.by_policy == policy.pk and point.rules["keep_monthly"] == 3
    assert point.expires - point.created == timedelta(days=30)
    policy.refresh_from_db()
    assert policy.next_run > timezone.now()
