"""Thin Celery tasks for vaults: take ids, call a service, safe to run twice."""

import logging

from celery import shared_task

from . import services
from .models import Vault
from .services import audit_head, policies

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def initialize_vault_storage_task(vault_id):
    services.initialize_vault_storage(vault_id)


@shared_task(acks_late=True)
def run_backup_job_task(job_id):
    services.run_backup_job(job_id)


@shared_task
def requeue_stalled_initializations_task():
    services.requeue_stalled_initializations()


@shared_task
def collect_garbage_task():
    for vault_id in Vault.objects.values_list("pk", flat=True):
        services.collect_garbage(vault_id)
    services.clear_removed_areas()


@shared_task
def note_storage_usage_task():
    services.note_storage_usage_of_all_vaults()


@shared_task
def expire_points_task():
    services.expire_points()


@shared_task
def archive_due_points_task():
    services.archive_due_points()


@shared_task(acks_late=True)
def run_verify_task(run_id):
    services.run_verify(run_id)


@shared_task
def seal_audit_log_task():
    """Rule A3: rows a crashed process left unsealed are chained, and the head is written outside the database
    (not where the log no longer continues the copy there: that copy is kept, and said loudly)."""
    try:
        audit_head.write_audit_head()
    except audit_head.HeadNotReplaced as exc:
        log.error("The audit log was tampered with: %s", exc)


@shared_task
def dispatch_policies_task():
    """Rule C2: every due backup policy runs once (the claim is in the service: many dispatchers are safe)."""
    policies.dispatch_due_policies()
