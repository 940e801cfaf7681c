"""Shared fixtures: accounts and users, isolated region stores and key services, and the
real servers some tests need (moto's S3/KMS server, a Celery worker process)."""

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from console import services as console_services
from console.models import Region
from vaults import services
from vaults.dataplane import keys, objectstore

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


@receiver(connection_created)
def allow_emptying_tables(sender, connection, **kwargs):
    """The suite empties every table between tests that commit (TRUNCATE): its sessions say so to the
    database's guards (console migration 0010), which refuse TRUNCATE to every other session."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET cloud_backup.allow_truncate = 'on'")


TENANTS = "tenants"  # the suite's BACKUP_PATH_ROOTS root: <test dir>/tenants/<account slug>/


@pytest.fixture
def tmp_path(tmp_path):
    """A test's own files are the "acme" account's (fixture `account`): its directory under the
    suite's path root, as a deployment with several tenants has it (rule T2)."""
    home = tmp_path / TENANTS / "acme"
    home.mkdir(parents=True)
    return home


@pytest.fixture
def other_tmp_path(tmp_path):
    """The "globex" account's directory (fixture `other_account`), beside acme's."""
    home = tmp_path.parent / "globex"
    home.mkdir()
    return home


@pytest.fixture(autouse=True)
def isolated_stores(settings, tmp_path):
    """Each test gets its own region directories, key service files and master secret, and runs with
    per-account path roots, as a deployment with several tenants does (rule T2)."""
    settings.BACKUP_PATH_ROOTS = [str(tmp_path.parent)]
    settings.SINGLE_TENANT = False
    settings.OBJECT_STORE = {**settings.OBJECT_STORE, "backend": "local", "root": str(tmp_path / "regions")}
    settings.KMS = {**settings.KMS, "backend": "local", "local_root": str(tmp_path / "kms")}
    settings.MASTER_SECRET = ""
    settings.MASTER_SECRET_FILE = tmp_path / "secrets" / "master.key"
    objectstore._store_for.cache_clear()
    keys._kms_client.cache_clear()
    yield tmp_path
    objectstore._store_for.cache_clear()
    keys._kms_client.cache_clear()


def ensure_regions():
    """Transactional tests flush every table, the seeded regions too: seed them again."""
    if not Region.objects.exists():
        from django.apps import apps

        importlib.import_module("console.migrations.0002_seed_regions").seed_regions(apps, None)


@pytest.fixture(autouse=True)
def seeded_regions(request):
    if "db" in request.fixturenames or "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
        ensure_regions()


@pytest.fixture
def region(db):
    ensure_regions()
    return Region.objects.get(code="cn-hangzhou")


@pytest.fixture
def lrs_region(db):
    ensure_regions()
    return Region.objects.get(code="us-west-1")


def make_user(username, *, staff=False, superuser=False):
    return get_user_model().objects.create_user(
        username=username, password="pw-" + username, is_staff=staff, is_superuser=superuser
    )


@pytest.fixture
def account(db):
    return console_services.create_account(actor=None, slug="acme", name="Acme")


@pytest.fixture
def other_account(db):
    return console_services.create_account(actor=None, slug="globex", name="Globex")


@pytest.fixture
def user(account):
    u = make_user("alice")
    console_services.add_member(actor=None, account=account, user=u)
    return u


@pytest.fixture
def other_user(other_account):
    u = make_user("mallory")
    console_services.add_member(actor=None, account=other_account, user=u)
    return u


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def make_vault(account, region):
    def make(name="vault-1", *, acct=None, reg=None, **kwargs):
        return services.create_vault(actor=None, account=acct or account, region=reg or region, name=name, **kwargs)

    return make


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 and KMS served over HTTP on loopback, as its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_stores(settings, moto_server):
    """Every region's object store is a bucket on the loopback S3 server (one bucket set per test)."""
    settings.OBJECT_STORE = {
        **settings.OBJECT_STORE,
        "backend": "s3",
        "endpoint_url": moto_server,
        "bucket_template": "t" + uuid.uuid4().hex[:12] + "-{region}",
        "access_key": "testing",
        "secret_key": "testing",
    }
    objectstore._store_for.cache_clear()
    return settings.OBJECT_STORE


@pytest.fixture
def aws_kms(settings, moto_server):
    """The KMS key provider talks to the loopback KMS API through boto3."""
    settings.KMS = {
        **settings.KMS,
        "backend": "aws",
        "endpoint_url": moto_server,
        "access_key": "testing",
        "secret_key": "testing",
    }
    keys._kms_client.cache_clear()
    return settings.KMS


@pytest.fixture
def broker_url(settings):
    """The broker of the test worker (and of this process); a test may give it a Redis of its own."""
    return settings.CELERY_BROKER_URL


@pytest.fixture
def celery_worker_process(transactional_db, settings, isolated_stores, broker_url):
    """A real `celery worker` process on a queue of its own, sharing the test database and stores."""
    from console.celery import app

    queue = "test-" + uuid.uuid4().hex[:8]
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    settings.REPLICATION_QUEUE_TEMPLATE = queue
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "OBJECT_STORE_BACKEND": settings.OBJECT_STORE["backend"],
        "OBJECT_STORE_ROOT": settings.OBJECT_STORE["root"],
        "S3_ENDPOINT_URL": settings.OBJECT_STORE["endpoint_url"],
        "S3_BUCKET_TEMPLATE": settings.OBJECT_STORE["bucket_template"],
        "S3_ACCESS_KEY_ID": settings.OBJECT_STORE["access_key"],
        "S3_SECRET_ACCESS_KEY": settings.OBJECT_STORE["secret_key"],
        "KMS_BACKEND": settings.KMS["backend"],
        "KMS_LOCAL_ROOT": settings.KMS["local_root"],
        "KMS_ENDPOINT_URL": settings.KMS["endpoint_url"],
        "KMS_SIGNING_REGION": settings.KMS["signing_region"],
        "KMS_ACCESS_KEY_ID": settings.KMS["access_key"],
        "KMS_SECRET_ACCESS_KEY": settings.KMS["secret_key"],
        "S3_ADDRESSING_STYLE": settings.OBJECT_STORE["addressing_style"],
        "CLOUD_BACKUP_MASTER_SECRET": settings.MASTER_SECRET,
        "CLOUD_BACKUP_MASTER_SECRET_FILE": str(settings.MASTER_SECRET_FILE),
        "BACKUP_PATH_ROOTS": ":".join(settings.BACKUP_PATH_ROOTS),
        "CLOUD_BACKUP_SINGLE_TENANT": "1" if settings.SINGLE_TENANT else "0",
        "CELERY_DEFAULT_QUEUE": queue,
        "REPLICATION_QUEUE_TEMPLATE": queue,
        # as `make run` starts it: SIGTERM gives running jobs a bounded time, then hands them back
        "REMAP_SIGTERM": "SIGQUIT",
    }
    worker = WorkerProcess(env, queue, isolated_stores / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()
        app.conf.task_default_queue = previous_queue


class WorkerProcess:
    """A `celery worker` in a process group of its own, so a test can SIGKILL all of it and start it again."""

    def __init__(self, env, queue, log_path):
        self.env, self.queue, self.log_path = env, queue, log_path
        self.proc = None
        self.start()

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        log = open(self.log_path, "a")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "console",
                "worker",
                "-Q",
                self.queue,
                "--concurrency=1",
                "--pool=prefork",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self):
        """SIGKILL the worker and its pool processes at once, as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(15)

    def terminate(self, timeout=30):
        """SIGTERM, as a service manager stops a worker; returns once it has exited."""
        self.proc.terminate()
        self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def wait_until(predicate, timeout=30, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
