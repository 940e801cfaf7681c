"""Thin Celery tasks of restore."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def run_restore_job_task(job_id):
    services.run_restore_job(job_id)


@shared_task
def reap_stale_restore_jobs_task():
    services.reap_stale_restore_jobs()
    services.requeue_lost_restore_jobs()
