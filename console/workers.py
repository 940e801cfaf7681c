"""Are the background workers there? Each Celery worker writes a heartbeat row; the console reads the latest.

Also the embedded broker's upkeep. The worker side (the thread that beats) is a bootstep in
`console/celery.py`; the banner that shows a silence is in `templates/base.html`.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import close_old_connections
from django.db.models import Max
from django.utils import timezone

from .models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Each worker beats this often, from a thread of its own: a worker whose every pool slot runs a long
# backup still beats. No beat for WORKER_SILENT_AFTER (three beats missed) and the console says so.
HEARTBEAT_EVERY = timedelta(seconds=20)
WORKER_SILENT_AFTER = timedelta(seconds=60)


def note_worker_heartbeat(hostname):
    """The worker `hostname` is alive now (one row per worker, so several hosts each keep their own)."""
    WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults={"last_seen": timezone.now()})


def beat_until(stopped, hostname):
    """The worker's heartbeat thread: beat every HEARTBEAT_EVERY until the `stopped` event is set.

    A failed beat (database unreachable, connection dropped) is logged and the next one tries again on a
    fresh connection: the thread never dies of it, or the console would wrongly report the worker gone.
    """
    while True:
        close_old_connections()
        try:
            note_worker_heartbeat(hostname)
        except Exception:
            logger.exception("Worker heartbeat of %s not written", hostname)
        finally:
            close_old_connections()
        if stopped.wait(HEARTBEAT_EVERY.total_seconds()):
            return


@dataclass(frozen=True)
class WorkerSilence:
    minutes: int | None  # whole minutes since the latest heartbeat; None: no worker was ever seen


def worker_silence(now=None):
    """A WorkerSilence when no worker has beaten within WORKER_SILENT_AFTER, else None (one query)."""
    latest = WorkerHeartbeat.objects.aggregate(latest=Max("last_seen"))["latest"]
    now = now or timezone.now()
    if latest is None:
        return WorkerSilence(minutes=None)
    if now - latest <= WORKER_SILENT_AFTER:
        return None
    return WorkerSilence(minutes=int((now - latest).total_seconds() // 60))


def prune_delivered_messages(app):
    """Delete the embedded broker's delivered messages; return how many went.

    kombu's SQLAlchemy transport keeps a delivered message as a row marked invisible and never reads it
    again (a message a stopping worker gives back is written anew), so without this the broker file grows
    by every message ever sent. Nothing to do on other brokers (Redis drops a message once delivered).
    """
    with app.connection_for_write() as conn:
        if conn.transport.driver_name != "sqlalchemy":
            return 0
        channel = conn.default_channel
        message = channel.message_cls
        pruned = channel.session.query(message).filter(message.visible.is_(False)).delete(synchronize_session=False)
        channel.session.commit()
    return pruned
