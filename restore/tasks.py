"""Thin Celery tasks of restore."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def run_restore_job_task(job_id):
    services.run_restore_job(job_id)
