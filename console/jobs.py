"""One lifecycle for every kind of background job (backup, restore, verification, and those to come).

    queued --claim--> running --finish--> succeeded | failed
       ^   (lost message: sent again)  |  (worker gone: failed by the reaper)

A kind registers its model (a `console.models.Job`), the name of its Celery task (which
gets the job's id), how it is named in the audit log and what a job whose worker died
says. The claim is one compare-and-set under the job's row lock and gives the attempt a
token; progress (`beat`), finishing and committing present it, so an attempt that was
reaped cannot finish later: it gets `JobLost` and its work is dropped.
"""

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import JobStatus
from .services import record_audit

log = logging.getLogger(__name__)

# A job still queued after this long has most likely lost its message (a broker restarted without persistence).
QUEUED_STALE = timedelta(minutes=5)
# A running job whose heartbeat is this old has lost its worker.
HEARTBEAT_STALE = timedelta(seconds=90)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobLost(Exception):
    """This attempt was given up for lost (or the job ended meanwhile): what it did must not land."""


@dataclass(frozen=True)
class JobKind:
    model: type
    task: str  # the Celery task's name
    audit: Callable  # job -> record_audit's arguments naming it: action, object_type, object_id, account, region_code
    lost: str  # the error of a job whose worker stopped
    related: tuple = ()  # what a claimed job is read with (select_related)
    on_claim: Callable | None = None  # job -> None, inside the claim's transaction (a lock to wait for)
    audit_success: bool = True  # False where the work audits what it made itself


KINDS = []


def register(kind):
    """Apps register their kinds of job at start (AppConfig.ready); the reaper goes over all of them."""
    KINDS.append(kind)
    return kind


def active(jobs):
    """Of these jobs, those queued or running with a live worker."""
    fresh = timezone.now() - HEARTBEAT_STALE
    return jobs.filter(Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat__gte=fresh))


def enqueue(kind, job_id):
    """Send the job's task; if the broker cannot be reached the job fails saying so, instead of waiting."""
    try:
        current_app.send_task(kind.task, args=(job_id,))
    except Exception as exc:
        log.exception("Cannot enqueue %s %s", kind.model.__name__, job_id)
        kind.model.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED, error=f"The task queue could not be reached: {exc}", finished=timezone.now()
        )


def claim(kind, job_id):
    """Queued (or running with a dead worker) -> running with a new attempt; None if it is done or taken."""
    with transaction.atomic():
        job = kind.model.objects.select_for_update(of=("self",)).select_related(*kind.related).filter(pk=job_id)
        job = job.first()
        if job is None or job.status in FINISHED:
            return None
        now = timezone.now()
        if job.status == JobStatus.RUNNING and job.heartbeat and now - job.heartbeat < HEARTBEAT_STALE:
            return None  # another worker has it
        if kind.on_claim:
            kind.on_claim(job)
        job.status, job.started, job.heartbeat, job.error = JobStatus.RUNNING, job.started or now, now, ""
        job.attempt = secrets.token_hex(8)
        job.save(update_fields=["status", "started", "heartbeat", "error", "attempt"])
    return job


def _mine(job):
    """The job's row, as long as this attempt still holds it."""
    return type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt)


def beat(job, **fields):
    """Progress and a sign of life; JobLost if this attempt no longer holds the job."""
    if not _mine(job).update(heartbeat=timezone.now(), **fields):
        raise JobLost(f"{type(job).__name__} {job.pk} was taken from this worker.")


def finish(kind, job, status, error="", detail=None, **fields):
    """End this attempt's job as succeeded or failed, audited; JobLost if the attempt no longer holds it.

    Inside the caller's transaction when there is one, so a commit and its job's end land together.
    """
    with transaction.atomic():
        if not _mine(job).update(status=status, error=error[:2000], finished=timezone.now(), **fields):
            raise JobLost(f"{type(job).__name__} {job.pk} was taken from this worker; its result is dropped.")
        failed = status == JobStatus.FAILED
        if failed or kind.audit_success:
            outcome = {"outcome": "failed", "reason": error} if failed else {"outcome": "success"}
            record_audit(actor=None, **outcome, **kind.audit(job), **(detail or {}))


def run(kind, job_id, work, expected=()):
    """Claim the job and do `work(job)`, which finishes it; a failure ends it as failed with the reason.

    `expected` are the errors whose message is the reason as it is; any other is reported as
    unexpected (never a job left running with nobody on it). Returns what `work` returned.
    """
    job = claim(kind, job_id)
    if job is None:
        return None
    try:
        return work(job)
    except SystemExit:  # the worker is stopping and ends its pool process (billiard raises it there)
        hand_back(kind, job)
        raise
    except JobLost as exc:
        log.warning("%s", exc)
    except expected as exc:
        _fail_quietly(kind, job, str(exc))
    except Exception as exc:
        log.exception("%s %s failed", kind.model.__name__, job_id)
        _fail_quietly(kind, job, f"Unexpected error: {exc.__class__.__name__}: {exc}")
    return None


def hand_back(kind, job):
    """The worker stops: the job goes back to the queue as it is (what it stored is reused) and is sent again,
    so the next worker resumes it at once instead of the reaper failing it. If the broker cannot be reached
    now, the job stays queued and the upkeep sends it again."""
    if not _mine(job).update(status=JobStatus.QUEUED, attempt="", heartbeat=timezone.now()):
        return
    log.warning("%s %s handed back: the worker is stopping", kind.model.__name__, job.pk)
    try:
        current_app.send_task(kind.task, args=(job.pk,))
    except Exception as exc:
        log.warning("%s %s stays queued for the upkeep to send again: %s", kind.model.__name__, job.pk, exc)


def _fail_quietly(kind, job, reason):
    try:
        finish(kind, job, JobStatus.FAILED, reason)
    except JobLost as exc:
        log.warning("%s", exc)


# -- the periodic upkeep of every kind ----------------------------------------------------------------------


def reap(kind):
    """End as failed each running job of the kind whose worker stopped beating; return their ids.

    The update repeats the filter, so two reapers at once do not both fail one.
    """
    running = kind.model.objects.filter(status=JobStatus.RUNNING, heartbeat__lt=timezone.now() - HEARTBEAT_STALE)
    reaped = []
    for job in running.select_related(*kind.related):
        with transaction.atomic():
            if running.filter(pk=job.pk).update(status=JobStatus.FAILED, error=kind.lost, finished=timezone.now()):
                record_audit(actor=None, outcome="failed", reason="worker lost", **kind.audit(job))
                reaped.append(job.pk)
    return reaped


def requeue(kind):
    """Send the message of each long-queued job of the kind again; return their ids.

    Claiming is atomic, so a second message for a job that was only waiting is harmless.
    For a queued job, `heartbeat` is when its message was last sent again.
    """
    stale = timezone.now() - QUEUED_STALE
    waiting = kind.model.objects.filter(status=JobStatus.QUEUED, created__lt=stale).exclude(heartbeat__gte=stale)
    return send_again(waiting, "heartbeat", lambda pk: enqueue(kind, pk))


def send_again(waiting, stamp, enqueue):
    """Enqueue each row of `waiting` that this call claims by setting its `stamp` field to now.

    `waiting` must exclude rows stamped within QUEUED_STALE: a message goes at most once
    per period, and two reapers running at once do not both send it.
    """
    sent = []
    for pk in waiting.values_list("pk", flat=True):
        if waiting.filter(pk=pk).update(**{stamp: timezone.now()}):
            enqueue(pk)
            sent.append(pk)
    return sent


def upkeep():
    """Every kind: jobs whose worker died fail, jobs whose message was lost are sent again."""
    return {kind.model.__name__: (reap(kind), requeue(kind)) for kind in KINDS}
