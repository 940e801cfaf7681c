"""Verification runs: read back a whole vault in a worker and keep the report."""

import time

from django.db import transaction
from django.utils import timezone

from console.services import HEARTBEAT_STALE, fail_lost_jobs, record_audit, requeue_lost_jobs

from ..models import VerifyRun
from ..readback import verify_vault

SAVE_EVERY = 1.0  # seconds between saves of a running verification's report


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


def _claim(run_id):
    """Queued (or running with a dead worker) -> running; None if it is done or another worker has it."""
    now = timezone.now()
    with transaction.atomic():
        run = VerifyRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or not run.is_active:
            return None
        if run.status == VerifyRun.Status.RUNNING and run.heartbeat and now - run.heartbeat < HEARTBEAT_STALE:
            return None
        run.status, run.heartbeat = VerifyRun.Status.RUNNING, now
        run.save(update_fields=["status", "heartbeat"])
    return VerifyRun.objects.select_related("vault__region", "vault__kms_key", "vault__account").get(pk=run_id)


def run_verify(run_id):
    """Read the vault back in this worker; the report so far and a heartbeat are saved as it goes."""
    run = _claim(run_id)
    if run is None:
        return None

    saved = time.monotonic()

    def save(report):
        nonlocal saved
        if time.monotonic() - saved >= SAVE_EVERY:
            saved = time.monotonic()
            VerifyRun.objects.filter(pk=run_id, status=VerifyRun.Status.RUNNING).update(
                report=report, heartbeat=timezone.now()
            )

    report = verify_vault(run.vault, on_progress=save)
    status = VerifyRun.Status.PROBLEMS if report["problems"] else VerifyRun.Status.CLEAN
    with transaction.atomic():
        VerifyRun.objects.filter(pk=run_id).update(status=status, report=report, finished=timezone.now())
        record_audit(
            actor=None,
            outcome="success" if not report["problems"] else "failed",
            problems=len(report["problems"]),
            **_audit_of(run),
        )
    run.refresh_from_db()
    return run


def reap_stale_verify_runs():
    """Runs whose worker died (no heartbeat for a while) end as failed, saying to start again."""
    return fail_lost_jobs(
        VerifyRun.objects.select_related("vault__region", "vault__account"),
        lambda run: {
            "status": VerifyRun.Status.FAILED,
            "finished": timezone.now(),
            "report": {**run.report, "error": "The worker running this verification stopped. Verify the vault again."},
        },
        _audit_of,
    )


def _audit_of(run):
    vault = run.vault
    return {
        "action": "verify_vault",
        "object_type": "vault",
        "object_id": vault.id,
        "account": vault.account,
        "region_code": vault.region.code,
    }
