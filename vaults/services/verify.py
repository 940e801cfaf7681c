"""Verification runs: read back a whole vault in a worker and keep the report (a `console.jobs` kind)."""

import time

from django.db import transaction

from console import jobs
from console.models import JobStatus
from console.services import record_audit

from ..dataplane.chunkstore import CorruptData
from ..dataplane.keys import KeyProviderError
from ..dataplane.objectstore import ObjectStoreError
from ..dataplane.readback import verify_vault
from ..models import VerifyRun

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
    jobs.enqueue(VERIFY, run_id)


def _audit_of(run):
    vault = run.vault
    return {
        "action": "verify_vault",
        "object_type": "vault",
        "object_id": vault.id,
        "account": vault.account,
        "region_code": vault.region.code,
    }


VERIFY = jobs.register(
    jobs.JobKind(
        model=VerifyRun,
        task="vaults.tasks.run_verify_task",
        audit=_audit_of,
        lost="The worker running this verification stopped. Verify the vault again.",
        related=("vault__region", "vault__kms_key", "vault__account"),
        audit_success=False,  # _verify's audit row says whether the vault is damaged
    )
)


def run_verify(run_id):
    """Read the vault back in this worker; the report so far and a heartbeat are saved as it goes.

    A run that read everything succeeds, damage found or not (its report lists it, and its
    audit row says failed when there is any); one that could not read fails with the reason.
    """
    return jobs.run(VERIFY, run_id, _verify, expected=(ObjectStoreError, KeyProviderError, CorruptData))


def _verify(run):
    saved = time.monotonic()

    def save(report):
        nonlocal saved
        if time.monotonic() - saved >= SAVE_EVERY:
            saved = time.monotonic()
            jobs.beat(run, report=report)

    report = verify_vault(run.vault, on_progress=save)
    with transaction.atomic():
        jobs.finish(VERIFY, run, JobStatus.SUCCEEDED, report=report)
        damaged = bool(report["problems"])  # the run went through; the log says whether the vault is sound
        record_audit(
            actor=None, outcome="failed" if damaged else "success", problems=len(report["problems"]), **_audit_of(run)
        )
    run.refresh_from_db()
    return run
