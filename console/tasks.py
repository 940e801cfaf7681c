"""Thin Celery tasks of the console app: the embedded broker's upkeep."""

from celery import shared_task

from . import jobs, workers


@shared_task
def job_upkeep_task():
    """Every kind of job: those whose worker died fail, those whose message was lost are sent again."""
    jobs.upkeep()


@shared_task(bind=True)
def prune_broker_messages_task(self):
    workers.prune_delivered_messages(self.app)
