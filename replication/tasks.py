"""Thin Celery tasks of replication; they run on the queue of the pair's destination region."""

import logging

from celery import shared_task
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from console.services import record_audit
from vaults.chunkstore import CorruptData
from vaults.keys import KeyProviderError
from vaults.objectstore import ObjectStoreError

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
    except engine.PairStopped:
        return
    except RETRYABLE as exc:
        delay = record_pair_error(pair_id, exc)
        if delay is not None and not self.request.is_eager:  # an eager call reports once instead of looping
            raise self.retry(countdown=delay, exc=exc, queue=self.request.delivery_info.get("routing_key")) from exc


def record_pair_error(pair_id, exc):
    """The visible error condition (rule: never silent); returns the retry delay, or None if stopped."""
    pair = ReplicationPair.objects.select_related("source_vault__region", "account").filter(pk=pair_id).first()
    if pair is None or not pair.is_active:
        return None
    reason = f"{exc.__class__.__name__}: {exc}"[:2000]
    first = not pair.error
    ReplicationPair.objects.filter(pk=pair_id).update(
        error=reason, error_since=pair.error_since or timezone.now(), attempts=F("attempts") + 1
    )
    if first:
        record_audit(
            actor=None,
            action="replication_error",
            object_type="replication_pair",
            object_id=pair_id,
            account=pair.account,
            region_code=pair.source_vault.region.code,
            outcome="failed",
            reason=reason,
        )
    log.warning("Replication %s failed (attempt %s): %s", pair_id, pair.attempts + 1, reason)
    return min(300, 5 * 2 ** min(pair.attempts, 6))


@shared_task
def reconcile_pairs_task():
    """The periodic catch-all: every running pair syncs, so nothing a trigger missed stays behind."""
    for pair_id in ReplicationPair.objects.filter(state__in=ReplicationPair.ACTIVE_STATES).values_list("pk", flat=True):
        services.enqueue_sync(pair_id)
