"""Thin Celery tasks of replication; they run on the queue of the pair's destination region."""

import logging

from celery import shared_task
from django.db import DatabaseError

from vaults.dataplane.chunkstore import CorruptData
from vaults.dataplane.keys import KeyProviderError
from vaults.dataplane.objectstore import ObjectStoreError

from . import engine, services
from .models import ReplicationPair

log = logging.getLogger(__name__)

RETRYABLE = (
    ObjectStoreError,
    KeyProviderError,
    CorruptData,
    engine.TargetNotReady,
    RuntimeError,
    OSError,
    DatabaseError,
)


@shared_task(bind=True, acks_late=True, max_retries=None)
def sync_pair_task(self, pair_id):
    """Copy what the target lacks; on a failure the pair shows why and the task retries with backoff."""
    try:
        engine.sync_pair(pair_id)
    except (engine.PairStopped, engine.RegionDisabled):
        return  # a disabled region: the pair says why it waits; the reconcile sends it again once enabled
    except RETRYABLE as exc:
        delay = services.note_pair_error(pair_id, f"{exc.__class__.__name__}: {exc}")
        if delay is None or self.request.is_eager:  # an eager call reports once instead of looping
            return
        if services.claim_retry(pair_id, delay):  # else a retry is scheduled already
            raise self.retry(countdown=delay, exc=exc, queue=self.request.delivery_info.get("routing_key")) from exc


@shared_task
def reconcile_pairs_task():
    """The periodic catch-all: every running pair syncs, so nothing a trigger missed stays behind
    (but a pair that waits for a disabled region, whose queue may have no worker, or for its scheduled retry)."""
    for pair in ReplicationPair.objects.active().select_related("source_vault__region", "target_vault__region"):
        if pair.stall_reason is None and not services.retry_pending(pair):
            services.enqueue_sync(pair.pk)
