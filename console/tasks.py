"""Thin Celery tasks of the console app: the embedded broker's upkeep."""

from celery import shared_task

from . import workers


@shared_task(bind=True)
def prune_broker_messages_task(self):
    workers.prune_delivered_messages(self.app)
