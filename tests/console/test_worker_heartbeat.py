"""Issue "The embedded broker crashed the worker of `make run`": workers write a heartbeat, every console page
warns when none was seen for a minute, and the embedded broker (kombu's SQLAlchemy transport on a SQLite file)
carries messages to a real worker process."""

import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection

from console import workers
from console.celery import app
from console.models import WorkerHeartbeat
from tests.conftest import ROOT, wait_until
from vaults.models import Vault, VaultStatus

BANNER = "No backup worker has been seen"
PAGE = "/regions/cn-hangzhou/vaults/"


def page(client, path=PAGE):
    response = client.get(path)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body and "Storage Vaults" in body  # the real page, not an error
    return body


def beat(hostname, ago):
    WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults={"last_seen": timezone.now() - ago})


# -- the banner -------------------------------------------------------------------------------------------------


def test_banner_when_no_worker_was_ever_seen(alice):
    # issue: the console went on serving with nothing processing jobs, and said nothing
    body = page(alice)
    assert f"{BANNER} yet: backups, restores and replication will wait." in body
    assert "Start one with <code>make run</code> or <code>celery -A console worker</code>." in body


def test_banner_counts_minutes_since_the_latest_heartbeat_of_any_worker(alice):
    beat("celery@host-a", timedelta(minutes=42))
    beat("celery@host-b", timedelta(minutes=5, seconds=20))  # the latest of several hosts counts
    body = page(alice)
    assert f"{BANNER} for 5 minutes: backups, restores and replication will wait." in body


def test_banner_from_just_over_a_minute(alice):
    beat("celery@host-a", timedelta(seconds=75))
    assert f"{BANNER} for 1 minute: " in page(alice)


def test_no_banner_with_a_fresh_heartbeat(alice):
    beat("celery@host-a", timedelta(minutes=30))
    beat("celery@host-b", timedelta(seconds=15))
    body = page(alice)
    assert BANNER not in body
    assert 'data-testid="worker-banner"' not in body


def test_banner_on_every_console_page_but_not_before_login(alice):
    for path in ("/regions/cn-hangzhou/audit-log/", "/regions/us-west-1/restore-jobs/"):
        response = alice.get(path)
        assert response.status_code == 200 and BANNER in response.content.decode(), path
    alice.logout()
    login = alice.get("/login/").content.decode()
    assert "<form" in login and BANNER not in login  # nothing about the service's insides for strangers


def test_silence_threshold_is_sixty_seconds(db):
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="celery@host-a", last_seen=now - timedelta(seconds=60))
    assert workers.worker_silence(now) is None
    assert workers.worker_silence(now + timedelta(seconds=1)) == workers.WorkerSilence(minutes=1)
    assert workers.worker_silence(now + timedelta(minutes=61)) == workers.WorkerSilence(minutes=62)


def test_htmx_fragments_do_not_query_the_heartbeat(alice, monkeypatch):
    # the banner costs one query on a full page and none on the progress fragments polled every 2 s
    calls = []
    monkeypatch.setattr("console.context_processors.worker_silence", lambda: calls.append(1))
    alice.get(PAGE, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="vault-table")
    assert calls == []
    alice.get(PAGE)
    assert calls == [1]


# -- the worker writes it -------------------------------------------------------------------------------------


@pytest.mark.worker
def test_a_worker_process_writes_its_heartbeat_and_the_banner_goes(celery_worker_process, alice):
    assert BANNER in page(alice)
    started = timezone.now()
    assert wait_until(lambda: WorkerHeartbeat.objects.filter(last_seen__gte=started).exists(), timeout=60)
    row = WorkerHeartbeat.objects.get()
    assert row.hostname.startswith("celery@")
    assert BANNER not in page(alice)
    # it goes on beating (every 20 s), not only once at start
    first = row.last_seen
    assert wait_until(lambda: WorkerHeartbeat.objects.get().last_seen > first, timeout=45, interval=1)


# -- the embedded broker ----------------------------------------------------------------------------------------


def use_broker(url):
    """Point this process's Celery app at `url`: its connection pools are made again on the next send."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_url(tmp_path, settings, monkeypatch):
    """The embedded broker's kind of URL, on a file of this test's own, for this process and the worker."""
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}?timeout=30"
    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads it before its configuration
    use_broker(url)
    yield url
    use_broker(previous)


def broker_rows(tmp_path):
    with sqlite3.connect(tmp_path / "broker.sqlite3") as db:
        return db.execute(
            "SELECT q.name, m.visible FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id ORDER BY m.id"
        ).fetchall()


def test_a_bare_manage_py_defaults_to_the_sqlalchemy_transport_on_a_file_in_the_data_dir(tmp_path):
    # issue: kombu's filesystem transport let a worker read a half-written message (JSONDecodeError) and die
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
    env["CLOUD_BACKUP_DATA_DIR"] = str(tmp_path / "data")
    shown = (
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SHOW_BROKER],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[-1]
        .split()
    )
    assert shown == [f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite3'}?timeout=30", "sqlalchemy"]


SHOW_BROKER = """
from console.celery import app
with app.connection_for_write() as conn:
    print(app.conf.broker_url, conn.transport.driver_name)
"""


@pytest.mark.worker
def test_embedded_broker_carries_tasks_to_a_worker_process(broker_url, celery_worker_process, make_vault, tmp_path):
    # issue: a task sent by this process (on commit of create_vault) is run by the worker through the SQLite broker
    vaults = [make_vault(f"through-sqlite-{i}") for i in range(5)]
    ids = [v.pk for v in vaults]

    def all_initialized():
        return not Vault.objects.filter(pk__in=ids, status=VaultStatus.INITIALIZING).exists()

    assert wait_until(all_initialized, timeout=60)
    assert set(Vault.objects.filter(pk__in=ids).values_list("status", flat=True)) == {VaultStatus.NORMAL}
    assert celery_worker_process.proc.poll() is None  # the worker is still there
    rows = broker_rows(tmp_path)
    # each message went through this file, and was taken (kombu marks a delivered row invisible)
    assert rows.count((celery_worker_process.queue, 0)) == 5
    assert (celery_worker_process.queue, 1) not in rows


def test_pruning_removes_delivered_messages_and_keeps_waiting_ones(broker_url, tmp_path):
    # the SQLAlchemy transport never deletes a delivered row: prune_broker_messages_task does, every 10 minutes
    with Connection(broker_url) as conn:
        taken, waiting = conn.SimpleQueue("taken-" + uuid.uuid4().hex[:6]), conn.SimpleQueue("waiting")
        for i in range(3):
            taken.put({"n": i})
        waiting.put({"n": "still here"})
        for _ in range(3):
            taken.get(timeout=5).ack()
        assert len(broker_rows(tmp_path)) == 4
        assert workers.prune_delivered_messages(app) == 3
        assert broker_rows(tmp_path) == [("waiting", 1)]
        assert waiting.get(timeout=5).payload == {"n": "still here"}
        taken.close()
        waiting.close()
