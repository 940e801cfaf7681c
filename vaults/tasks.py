"""Thin Celery tasks for vaults: take ids, call a service, safe to run twice."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def initialize_vault_storage_task(vault_id):
    services.initialize_vault_storage(vault_id)


@shared_task(acks_late=True)
def run_backup_job_task(job_id):
    services.run_backup_job(job_id)
