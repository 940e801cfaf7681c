"""Verification runs: read back a whole vault in a worker and keep the report."""

from django.db import transaction
from django.utils import timezone

from console.services import record_audit, requeue_lost_jobs

from ..models import VerifyRun
from ..readback import verify_vault


def start_verify(*, actor, vault):
    with transaction.atomic():
        run = VerifyRun.objects.create(vault=vault)
        record_audit(
            actor=actor,
            action="start_verify",
            object_type="vault",
            object_id=vault.id,
            account=vault.account,
            region_code=vault.region.code,
        )
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id):
    from ..tasks import run_verify_task

    try:
        run_verify_task.delay(run_id)
    except Exception as exc:  # the broker is down: say so
        VerifyRun.objects.filter(pk=run_id).update(
            status=VerifyRun.Status.FAILED,
            finished=timezone.now(),
            report={"error": f"The task queue could not be reached: {exc}"},
        )


def requeue_lost_verify_runs():
    """Verify runs whose message was lost are queued again (they would wait for ever)."""
    return requeue_lost_jobs(VerifyRun, _enqueue)


def run_verify(run_id):
    updated = VerifyRun.objects.filter(pk=run_id, status=VerifyRun.Status.QUEUED).update(
        status=VerifyRun.Status.RUNNING
    )
    if not updated:
        return None
    run = VerifyRun.objects.select_related("vault__region", "vault__kms_key", "vault__account").get(pk=run_id)
    report = verify_vault(run.vault)
    status = VerifyRun.Status.PROBLEMS if report["problems"] else VerifyRun.Status.CLEAN
    with transaction.atomic():
        VerifyRun.objects.filter(pk=run_id).update(status=status, report=report, finished=timezone.now())
        record_audit(
            actor=None,
            action="verify_vault",
            object_type="vault",
            object_id=run.vault.id,
            account=run.vault.account,
            region_code=run.vault.region.code,
            outcome="success" if not report["problems"] else "failed",
            problems=len(report["problems"]),
        )
    run.refresh_from_db()
    return run
