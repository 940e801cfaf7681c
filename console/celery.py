"""The Celery app: configured from Django settings (CELERY_*), tasks found per app, and the worker's heartbeat."""

import os
import threading

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # A task running when the broker connection drops goes on to its end (its work is kept); every task is
    # idempotent, so a redelivery of its message after the broker comes back finds the work done.
    worker_cancel_long_running_tasks_on_connection_loss=False,
)
app.conf.beat_schedule = {
    "job-upkeep": {"task": "console.tasks.job_upkeep_task", "schedule": 60.0},
    "requeue-stalled-initializations": {"task": "vaults.tasks.requeue_stalled_initializations_task", "schedule": 60.0},
    "collect-garbage": {"task": "vaults.tasks.collect_garbage_task", "schedule": 3600.0},
    "expire-points": {"task": "vaults.tasks.expire_points_task", "schedule": 300.0},
    "archive-due-points": {"task": "vaults.tasks.archive_due_points_task", "schedule": 3600.0},
    "reconcile-replication": {"task": "replication.tasks.reconcile_pairs_task", "schedule": 60.0},
    "note-storage-usage": {"task": "vaults.tasks.note_storage_usage_task", "schedule": 3600.0},
    "dispatch-policies": {"task": "vaults.tasks.dispatch_policies_task", "schedule": 30.0},
    "seal-audit-log": {"task": "vaults.tasks.seal_audit_log_task", "schedule": 120.0},
    "prune-broker-messages": {"task": "console.tasks.prune_broker_messages_task", "schedule": 600.0},
}
app.autodiscover_tasks()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Every worker writes its heartbeat row from a thread of its own, so the console can tell when none runs.

    Not a periodic task: one would wait in the queue behind long jobs while every pool slot is busy (and
    without `celery beat` never run), so a busy worker would look gone.
    """

    requires = ("celery.worker.components:Pool",)  # the pool's processes are forked before the thread starts

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stopped = threading.Event()

    def start(self, worker):
        from console.workers import beat_until  # models load after the Celery app: when the worker starts

        thread = threading.Thread(
            target=beat_until, args=(self.stopped, worker.hostname), name="worker-heartbeat", daemon=True
        )
        thread.start()

    def stop(self, worker):
        self.stopped.set()


app.steps["worker"].add(WorkerHeartbeat)
