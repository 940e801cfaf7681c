"""One sync at a time per pair: a lease on the pair's row.

The reconcile queues a sync of every running pair each minute and every new point
queues one too, so during a long copy several syncs of one pair are queued; run side
by side they would copy the same chunks twice (and bill them twice). A sync first takes
the pair's lease; one that finds it held marks the pair `sync_wanted` and ends, and the
holder runs another round before it lets go. Every transition happens under the pair's
row lock, so no request is lost between a holder's last check and its release.

A holder that died is recognised at once on its own host (its process is gone) and
elsewhere once its heartbeat, refreshed with every stored pack, is LEASE_STALE old.
"""

import os
import socket
import threading
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import ReplicationPair

LEASE_STALE = timedelta(minutes=2)


def me():
    """This thread of this process on this host: the lease's owner while it syncs."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def held_elsewhere(pair, now=None):
    """Whether a live sync other than this thread's holds the pair's lease."""
    owner = pair.sync_owner
    if not owner or owner == me() or pair.sync_heartbeat is None:
        return False
    if pair.sync_heartbeat < (now or timezone.now()) - LEASE_STALE:
        return False
    host, pid, _ = owner.split(":", 2)
    if host == socket.gethostname() and pid != str(os.getpid()):
        return _process_alive(int(pid))  # a worker killed or crashed on this host is seen gone at once
    return True


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process whose parent died too stays a zombie until something reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def take(pair_id):
    """Hold the pair's lease; if another sync holds it, ask it for one more round and return False."""
    with transaction.atomic():
        pair = ReplicationPair.objects.select_for_update().get(pk=pair_id)
        if held_elsewhere(pair):
            if not pair.sync_wanted:
                pair.sync_wanted = True
                pair.save(update_fields=["sync_wanted"])
            return False
        pair.sync_owner, pair.sync_heartbeat, pair.sync_wanted = me(), timezone.now(), False
        pair.save(update_fields=["sync_owner", "sync_heartbeat", "sync_wanted"])
        return True


def release(pair_id):
    """Let go of the lease, unless another round was asked for meanwhile: then keep it and return True."""
    with transaction.atomic():
        pair = ReplicationPair.objects.select_for_update().get(pk=pair_id)
        if pair.sync_owner != me():
            return False
        if pair.sync_wanted:
            pair.sync_wanted, pair.sync_heartbeat = False, timezone.now()
            pair.save(update_fields=["sync_wanted", "sync_heartbeat"])
            return True
        pair.sync_owner, pair.sync_heartbeat = "", None
        pair.save(update_fields=["sync_owner", "sync_heartbeat"])
        return False


def drop(pair_id):
    """Let go after a failure (the task's retry takes it again); never raises."""
    try:
        ReplicationPair.objects.filter(pk=pair_id, sync_owner=me()).update(sync_owner="", sync_heartbeat=None)
    except Exception:  # the database itself may be what failed: the lease then goes stale
        pass
