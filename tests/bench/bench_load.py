"""The console under load: simulated users click through it while a replication sync and a backup run.

    .venv/bin/python tests/bench/bench_load.py [--users 20] [--mib 128] [--load-seconds 30]

Everything on loopback, in a fresh PostgreSQL database (DATABASE_URL's server, default the
local one; dropped at the end), a Redis broker (CELERY_BROKER_URL's server, default
redis://127.0.0.1:6379, database 11, flushed before and after) and a temporary
CLOUD_BACKUP_DATA_DIR (local directories as region stores). Set-up and seeding go through
`manage.py` in child processes:

1. `migrate`, `seed_demo`, `seed_scale` for one team account per five users (60 vaults,
   3,000 catalog points each), then the users (`user01`...): each a member of one team
   account, the first half also of `demo`, whose vaults are the ones that move below.
2. The web server, `manage.py runserver --noreload` (threaded; gunicorn is not a dependency
   of the project), DEBUG off, on a free port of 127.0.0.1, and one `celery -A console worker`
   on every queue (`manage.py worker_queues`), concurrency 2, as `make run` starts them (without
   the embedded beat, so no periodic task lands in one measurement and not the other).
3. Alone: a data set (--mib MiB, half compressible text, half random, as bench_backup.py)
   under the account's directory of BACKUP_PATH_ROOTS, backed up by the worker into two new
   vaults of demo; then `manage.py replication start` of the first to us-west-1 (new target
   vault), timed from the database until the historical sync has finished.
4. Under load: the users log in through the login form (csrf token parsed, one correct
   login each: django-axes locks after five failures) and click through the console with a
   think time (--think, default 0.2 to 0.5 s): the pages of the side navigation, vault
   pages (older points, a month), the vault list's next page, the Create restore job
   dialog (vault, then point), the Back up now and replication dialogs, another region
   and back, the account switch; every element of a page that polls (hx-trigger
   "every 2s") is polled with the htmx headers, a few times at the think-time pace, until
   it answers 286. After a warm-up the second vault's replication starts (the same sync)
   and a backup of the same data set into a third vault; the users click until both have
   finished and --load-seconds have passed.

Printed: requests, errors (a status of 400 or more, a redirect to the login page, a login
form where a page should be, any exception), p50/p99 of page times (login requests apart),
the sync alone and under load (the historical sync: history_finished - history_started of
the pair, written by the worker) and their ratio, the backups alone and under load
(finished - started of the job), and one JSON line with every figure. The target is 0 errors.
"""

import argparse
import html
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_backup import make_dataset  # noqa: E402  (one data set for all benchmarks)

BIN = Path(sys.executable).parent
DB_NAME = "cloud_backup_bench_load"
REGION = "cn-hangzhou"
DESTINATION = "us-west-1"
USERS_PER_TEAM = 5
# Unset so that the stores, keys and queues are the defaults inside this run's own data directory.
UNSET = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_DEFAULT_QUEUE",
    "REPLICATION_QUEUE_TEMPLATE",
    "OBJECT_STORE_BACKEND",
    "OBJECT_STORE_ROOT",
    "KMS_BACKEND",
    "KMS_LOCAL_ROOT",
    "CLOUD_BACKUP_MASTER_SECRET",
    "CLOUD_BACKUP_MASTER_SECRET_FILE",
    "CLOUD_BACKUP_SINGLE_TENANT",
    "BACKUP_PATH_ROOTS",
    "TEST_DATABASE_NAME",
}

# The users, in a child (`manage.py shell -c`): one password hash for all (a hash costs ~0.5 s of CPU).
SEED_USERS = """
import os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from console import services
from console.models import Account

User = get_user_model()
password = make_password(os.environ["BENCH_PASSWORD"])
teams = os.environ["BENCH_TEAMS"].split(",")
demo = Account.objects.get(slug="demo")
count = int(os.environ["BENCH_USERS"])
for i in range(1, count + 1):
    user = User.objects.create(username=f"user{i:02d}", password=password)
    services.add_member(actor=None, account=Account.objects.get(slug=teams[(i - 1) % len(teams)]), user=user)
    if i <= (count + 1) // 2:
        services.add_member(actor=None, account=demo, user=user)
"""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values, q):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-q * len(ordered) // 100))
    return ordered[int(rank) - 1]


def code_version():
    """The commit the run measured, `+modified` when product code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "console", "vaults", "replication", "restore", "templates"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+modified" if dirty.stdout.strip() else "") if head.returncode == 0 else None


# -- the database, the broker, child processes --------------------------------------------------------


def server_url(database_url, name):
    return urlunsplit(urlsplit(database_url)._replace(path="/" + name))


def fresh_database(database_url, name):
    """A new, empty database on the server of `database_url`; returns its URL."""
    import psycopg

    with psycopg.connect(server_url(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url(database_url, name)


def drop_database(database_url, name):
    import psycopg

    with psycopg.connect(server_url(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_broker(url):
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def manage(env, *args):
    """`manage.py ARGS` in a child; its stdout, or the end of its stderr in the exception."""
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc.stdout


def manage_json(env, *args):
    out = manage(env, *args, "--json")
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A long-running child (the web server, the worker) in a session of its own, its output in a file."""

    def __init__(self, name, args, env, log_path):
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self):
        return self.log_path.read_text(errors="replace")

    def check_alive(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"the {self.name} exited ({self.proc.returncode}): {self.log()[-3000:]}")

    def stop(self):
        """SIGTERM to its process group (celery's pool too), then SIGKILL what is left."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            log(f"the {self.name} (pid {self.proc.pid}) did not end")


def wait_until(predicate, timeout, what, interval=0.2, services=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            service.check_alive()
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise SystemExit(f"timed out ({timeout:.0f} s) waiting for {what}")


# -- what the worker does, read from the database -------------------------------------------------------


class Catalog:
    """Read-only queries of this process, straight to the database (no Django here)."""

    def __init__(self, url):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def pair(self, pair_id):
        row = self.conn.execute(
            "SELECT state, error, created, history_started, history_finished, history_bytes_total, bytes_sent "
            "FROM replication_replicationpair WHERE id = %s",
            (pair_id,),
        ).fetchone()
        keys = ("state", "error", "created", "started", "finished", "bytes_total", "bytes_sent")
        return dict(zip(keys, row, strict=True))

    def job(self, job_id):
        row = self.conn.execute(
            "SELECT status, error, created, started, finished, bytes_done, bytes_stored FROM vaults_backupjob "
            "WHERE id = %s",
            (job_id,),
        ).fetchone()
        return dict(zip(("status", "error", "created", "started", "finished", "bytes", "stored"), row, strict=True))

    def close(self):
        self.conn.close()


def sync_done(catalog, pair_id):
    pair = catalog.pair(pair_id)
    if pair["state"] == "stopped":
        raise SystemExit(f"{pair_id} stopped: {pair}")
    return pair if pair["state"] == "running" and pair["finished"] else None


def job_done(catalog, job_id):
    job = catalog.job(job_id)
    if job["status"] in ("queued", "running"):
        return None
    if job["status"] != "succeeded":
        raise SystemExit(f"backup job {job_id} ended {job['status']}: {job['error']}")
    return job


def sync_figures(pair):
    return {
        "seconds": (pair["finished"] - pair["started"]).total_seconds(),
        "start_to_finish_seconds": (pair["finished"] - pair["created"]).total_seconds(),
        "bytes_total": pair["bytes_total"],
        "bytes_sent": pair["bytes_sent"],
        "error_seen": pair["error"] or None,
    }


def job_seconds(job):
    return (job["finished"] - job["started"]).total_seconds()


# -- the simulated users ------------------------------------------------------------------------------------


class Stats:
    """Every request of every user: (start, end, kind, status or None, ms); errors with what went wrong."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.errors = []

    def record(self, start, end, kind, status, error=None, detail=None):
        with self.lock:
            self.requests.append((start, end, kind, status, (end - start) * 1000))
            if error:
                self.errors.append({"kind": kind, "status": status, "error": error, **(detail or {})})


class Failed(Exception):
    """A request of a user failed (recorded already): the user starts again from a page it knows."""


CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NAV = re.compile(r'<nav class="sidenav".*?</nav>', re.S)
LINK = re.compile(r'<a href="([^"]+)"[^>]*>([^<]+)</a>')
REGION_SELECTOR = re.compile(r'<details class="region-selector".*?</details>', re.S)
REGION_LINK = re.compile(r'<li><a href="([^"]+)">')  # the current region's link has aria-current
ACCOUNT_SWITCH = re.compile(r'<form class="account-switch" method="post" action="([^"]+)">(.*?)</form>', re.S)
OPTION = re.compile(r'<option value="([^"]+)"')
VAULT_LINK = re.compile(r'<td><a href="(/regions/[\w-]+/vaults/[^/"]+/)">')
NEXT_HX = re.compile(r'hx-get="(\?page=\d+)" hx-target="#vault-table"[^>]*rel="next"')
NEXT_LINK = re.compile(r'<a href="(\?[^"]*page=\d+[^"]*)"[^>]*rel="next"')
DIALOG = re.compile(r'hx-get="([^"]+/(?:backup|replication)/)" hx-target="#dialog"')
POLLING = re.compile(r'<(\w+)\s([^>]*hx-trigger="every 2s"[^>]*)>')
ATTR = re.compile(r'([\w-]+)="([^"]*)"')
SELECT = r'<select name="{}"[^>]*>(.*?)</select>'


def attrs(tag):
    return {k: html.unescape(v) for k, v in ATTR.findall(tag)}


def poll_kind(url):
    for part, kind in (
        ("/replication/progress/", "poll: replication progress"),
        ("/status/", "poll: vault status"),
        ("/backup-jobs/", "poll: backup jobs"),
        ("/restore-jobs/", "poll: restore jobs"),
        ("/verify/report/", "poll: verify report"),
    ):
        if part in url:
            return kind
    return "poll: other"


class User(threading.Thread):
    """One person in a browser: logs in once, then clicks what the pages show until told to stop."""

    def __init__(self, username, password, port, stats, stop, seed, think):
        super().__init__(name=username, daemon=True)
        self.username, self.password, self.port = username, password, port
        self.origin = f"http://127.0.0.1:{port}"
        self.stats, self.stop, self.rng, self.think = stats, stop, random.Random(seed), think
        self.cookies = {}
        self.logged_in = threading.Event()
        self.login_failed = None
        self.path, self.text = "/", ""  # the page the browser shows
        self.home = None  # the region's Storage Vaults page after login
        self.vault_pages = []

    # -- HTTP ----------------------------------------------------------------------------------------------

    def send(self, method, path, kind, headers=None, data=None):
        sent = {"Host": f"127.0.0.1:{self.port}", "User-Agent": "bench-load", "Accept": "text/html"}
        sent["Connection"] = "close"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data).encode()
            sent.update(
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": self.origin,
                    "Referer": self.origin + self.path,
                }
            )
        sent.update(headers or {})
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                content = response.read().decode("utf-8", "replace")
            finally:
                conn.close()
        except Exception as exc:
            end = time.monotonic()
            self.stats.record(start, end, kind, None, f"{exc.__class__.__name__}: {exc}", {"url": path})
            raise Failed from exc
        end = time.monotonic()
        for header in response.headers.get_all("Set-Cookie") or ():
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        status, location = response.status, response.getheader("Location")
        error = None
        if status >= 400:
            error = f"HTTP {status}"
        elif self.logged_in.is_set() and location and urlsplit(location).path.startswith("/login/"):
            error = f"HTTP {status} to the login page"
        elif self.logged_in.is_set() and status == 200 and "<h1>Log in to Cloud Backup</h1>" in content:
            error = "a login form instead of the page"
        detail = {"url": path, "user": self.username, "body": content[:300]} if error else None
        self.stats.record(start, end, kind, status, error, detail)
        if error:
            raise Failed
        return status, location, content

    def get(self, path, kind, headers=None):
        """GET, following redirects (each one a request); the final path and text."""
        for _ in range(5):
            status, location, text = self.send("GET", path, kind, headers)
            if status not in (301, 302, 303, 307, 308):
                return path, text
            path = urljoin(path, location)
        raise Failed

    def visit(self, path, kind):
        """A full page: the browser shows it, then sits on it polling what polls."""
        self.path, self.text = self.get(path, kind)
        if "/vaults/" in self.path and self.path.endswith("/vaults/") and VAULT_LINK.search(self.text):
            self.vault_pages = VAULT_LINK.findall(self.text)
        self.poll()

    def htmx(self, path, kind, target=None, trigger=None):
        headers = {"HX-Request": "true", "HX-Current-URL": self.origin + self.path}
        if target:
            headers["HX-Target"] = target
        if trigger:
            headers["HX-Trigger"] = trigger
        status, location, text = self.send("GET", urljoin(self.path, path), kind, headers)
        return status, text

    def poll(self, rounds=2):
        """Each element with hx-trigger="every 2s", up to `rounds` times at the think-time pace, until 286."""
        live = {}
        for _tag, attributes in POLLING.findall(self.text):
            a = attrs(attributes)
            if "hx-get" in a and "id" in a:
                target = a.get("hx-target", "this")
                live[a["id"]] = (a["hx-get"], a["id"] if target == "this" else target.lstrip("#"))
        for _ in range(rounds):
            if not live or self.stop.is_set():
                return
            self.pause()
            for element, (url, target) in list(live.items()):
                status, text = self.htmx(url, poll_kind(url), target=target, trigger=element)
                if status == 286 or 'hx-trigger="every 2s"' not in text:
                    del live[element]

    def pause(self):
        self.stop.wait(self.rng.uniform(*self.think))

    # -- what a person does ------------------------------------------------------------------------------

    def login(self):
        _, _, form = self.send("GET", "/login/", "login form")
        token = CSRF.search(form)
        if not token:
            self.stats.record(time.monotonic(), time.monotonic(), "login", None, "no csrf token in the login form", {})
            raise Failed
        status, location, _ = self.send(
            "POST",
            "/login/",
            "login",
            data={"csrfmiddlewaretoken": token.group(1), "username": self.username, "password": self.password},
        )
        if status != 302:
            self.stats.record(time.monotonic(), time.monotonic(), "login", status, "the login was refused", {})
            raise Failed
        self.logged_in.set()
        self.visit(urljoin("/login/", location), "home")
        self.home = self.path

    def nav(self):
        block = NAV.search(self.text)
        return {html.unescape(label): href for href, label in LINK.findall(block.group(0))} if block else {}

    def click_nav(self, label):
        links = self.nav()
        if label not in links:
            self.visit(self.home, "home")
            links = self.nav()
        self.visit(links[label], label)

    def vault_page(self):
        if not self.vault_pages:
            self.click_nav("Storage Vaults")
        if not self.vault_pages:
            return
        self.visit(self.rng.choice(self.vault_pages), "a vault page")
        roll = self.rng.random()
        if roll < 0.3 and (older := NEXT_LINK.search(self.text)):
            self.pause()
            self.visit(urljoin(self.path, html.unescape(older.group(1))), "a vault page, older points")
        elif roll < 0.45:
            self.pause()
            month = time.strftime("%Y-%m")
            self.visit(f"{self.path}?created_from={month}-01&created_to={month}-28", "a vault page, a month")
        elif roll < 0.7 and (dialogs := DIALOG.findall(self.text)):
            self.pause()
            url = self.rng.choice(dialogs)
            kind = "dialog: back up now" if url.endswith("/backup/") else "dialog: configure replication"
            self.htmx(html.unescape(url), kind, target="dialog")

    def vault_list_next(self):
        self.click_nav("Storage Vaults")
        more = NEXT_HX.search(self.text)
        if more:
            self.pause()
            _, text = self.htmx(more.group(1), "vault list, next page (htmx)", target="vault-table")
            self.vault_pages = VAULT_LINK.findall(text) or self.vault_pages

    def restore_dialog(self):
        """Create restore job: open the dialog, choose a vault, then a point (each an htmx re-render)."""
        self.click_nav("Restore Jobs")
        create = urljoin(self.path, "create/")
        _, text = self.htmx(create, "dialog: create restore job", target="dialog")
        vaults = OPTION.findall(m.group(1)) if (m := re.search(SELECT.format("vault"), text, re.S)) else []
        if not vaults:
            return
        self.pause()
        vault = self.rng.choice(vaults)
        _, text = self.htmx(f"{create}?{urlencode({'vault': vault})}", "dialog: restore, vault chosen")
        points = OPTION.findall(m.group(1)) if (m := re.search(SELECT.format("point"), text, re.S)) else []
        if points:
            self.pause()
            query = urlencode({"vault": vault, "point": self.rng.choice(points)})
            self.htmx(f"{create}?{query}", "dialog: restore, point chosen")

    def other_region(self):
        block = REGION_SELECTOR.search(self.text)
        links = [html.unescape(h) for h in REGION_LINK.findall(block.group(0))] if block else []
        if not links:
            return
        preferred = [h for h in links if f"/regions/{DESTINATION}/" in h]
        self.visit(
            self.rng.choice(preferred) if preferred and self.rng.random() < 0.5 else self.rng.choice(links),
            "another region",
        )
        self.pause()
        self.visit(self.home, "back to the home region")

    def switch_account(self):
        """The top bar's account switch (users of two accounts), from a list page.

        The form sends the page's path as `next`: from a vault's page that is a vault of the account
        left, which the account switched to answers with a 404; a person would go to a list first.
        """
        if not self.nav() or re.search(r"/vaults/[^/]+/", urlsplit(self.path).path):
            self.click_nav("Storage Vaults")
        form = ACCOUNT_SWITCH.search(self.text)
        token = CSRF.search(form.group(2)) if form else None
        if not form or not token:
            return
        current = re.search(r'<option value="([^"]+)" selected', form.group(2))
        others = [a for a in OPTION.findall(form.group(2)) if not current or a != current.group(1)]
        following = re.search(r'name="next" value="([^"]*)"', form.group(2))
        data = {
            "csrfmiddlewaretoken": token.group(1),
            "account": self.rng.choice(others),
            "next": html.unescape(following.group(1)) if following else "",
        }
        self.pause()
        _, location, _ = self.send("POST", html.unescape(form.group(1)), "account switch", data=data)
        self.vault_pages = []
        self.visit(urljoin(self.path, location), "after the account switch")

    CLICKS = (
        ("Storage Vaults", 4),
        ("a vault page", 4),
        ("Backup Jobs", 2),
        ("Backup Sources", 1),
        ("Restore Jobs", 2),
        ("Restore Targets", 1),
        ("Create restore job", 2),
        ("Usage & Billing", 2),
        ("Audit Log", 2),
        ("Policy Center", 0.5),
        ("vault list, next page", 1),
        ("another region", 1),
        ("home", 0.5),
        ("account switch", 0.5),
    )

    def click(self):
        name = self.rng.choices([c for c, _ in self.CLICKS], [w for _, w in self.CLICKS])[0]
        if name == "a vault page":
            self.vault_page()
        elif name == "vault list, next page":
            self.vault_list_next()
        elif name == "Create restore job":
            self.restore_dialog()
        elif name == "another region":
            self.other_region()
        elif name == "home":
            self.visit("/", "home")
        elif name == "account switch":
            self.switch_account()
        else:
            self.click_nav(name)

    def run(self):
        try:
            self.login()
        except Failed:
            self.login_failed = True
            self.logged_in.set()
            return
        except Exception as exc:  # a bug of this script: counted, never silent
            self.stats.record(time.monotonic(), time.monotonic(), "script", None, repr(exc), {})
            self.login_failed = True
            self.logged_in.set()
            return
        while not self.stop.is_set():
            self.pause()
            if self.stop.is_set():
                return
            try:
                self.click()
            except Failed:
                self.path, self.text = self.home, ""  # start again from the region's first page
            except Exception as exc:
                self.stats.record(time.monotonic(), time.monotonic(), "script", None, repr(exc), {})
                self.path, self.text = self.home, ""


# -- the run ------------------------------------------------------------------------------------------------


def summary(times):
    if not times:
        return {"n": 0}
    return {
        "n": len(times),
        "p50_ms": round(percentile(times, 50), 1),
        "p99_ms": round(percentile(times, 99), 1),
        "max_ms": round(max(times), 1),
    }


def group_cpu_seconds(pgid):
    """User + system CPU seconds of the live processes of a process group (Linux /proc)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ..., utime (12), stime (13)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def cpu_now(services):
    """CPU seconds so far of this process (the users' threads) and of each service."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return [own.ru_utime + own.ru_stime] + [group_cpu_seconds(s.proc.pid) for s in services]


def tasks_received(text):
    counts = {}
    for name in re.findall(r"Task ([\w.]+)\[[^\]]+\] received", text):
        counts[name] = counts.get(name, 0) + 1
    return counts


def server_errors(text):
    """500s the server logged, with the first traceback."""
    count = len(re.findall(r"^Internal Server Error: ", text, re.M))
    first = re.search(r"^Internal Server Error: .*?(?=^\[|\Z)", text, re.M | re.S)
    return count, first.group(0)[-4000:] if first else None


def run(args, work, env, services, catalog, stop):
    tenants = work / "tenants"
    data = tenants / "demo" / "dataset"
    log(f"data set: {args.mib} MiB under {data}")
    files = make_dataset(data, args.mib << 20, random.Random(42))
    os.sync()

    vaults = {}
    for key in ("alone", "loaded", "backup"):
        vault = manage_json(
            env, "vault", "create", "--account", "demo", "--region", REGION, "--name", f"bench-{key}", "--wait"
        )
        if vault["status"] != "normal":
            raise SystemExit(f"vault {key}: {vault}")
        vaults[key] = vault["id"]

    backups_alone = []
    for key in ("alone", "loaded"):
        queued = manage_json(env, "backup", "--vault", vaults[key], str(data))["job"]
        job = wait_until(lambda q=queued: job_done(catalog, q), 600, f"backup into {key}", services=services)
        backups_alone.append(job_seconds(job))
        log(f"backup into bench-{key}: {job_seconds(job):.2f} s ({job['bytes'] / 1e6:.1f} MB read)")

    log("sync alone")
    started = manage_json(
        env, "replication", "start", "--source", vaults["alone"], "--region", DESTINATION, "--create-name", "copy-alone"
    )
    alone = sync_figures(
        wait_until(lambda: sync_done(catalog, started["id"]), 600, "the sync alone", 0.05, services=services)
    )
    log(f"sync alone: {alone['seconds']:.2f} s")

    stats = Stats()
    users = [
        User(f"user{i:02d}", args.password, args.port, stats, stop, seed=i, think=tuple(args.think))
        for i in range(1, args.users + 1)
    ]
    load_start, cpu_start = time.monotonic(), cpu_now(services)
    for user in users:
        user.start()
    for user in users:
        user.logged_in.wait(180)
    logged_in = time.monotonic()
    failed_logins = sum(1 for u in users if u.login_failed or not u.logged_in.is_set())
    log(f"{args.users - failed_logins} users logged in ({logged_in - load_start:.1f} s); warm-up {args.warmup:.0f} s")
    stop.wait(args.warmup)

    log("under load: the second sync and a backup")
    under_start = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, "manage.py", *command, "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in (
            ("replication", "start", "--source", vaults["loaded"], "--region", DESTINATION, "--create-name", "copy-2"),
            ("backup", "--vault", vaults["backup"], str(data)),
        )
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(child.args[2:5])} failed: {err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    pair_id, job_id = results[0]["id"], results[1]["job"]
    ends = {}

    def both_done():
        if "sync" not in ends and sync_done(catalog, pair_id):
            ends["sync"] = time.monotonic()
        if "backup" not in ends and job_done(catalog, job_id):
            ends["backup"] = time.monotonic()
        return len(ends) == 2

    wait_until(both_done, args.timeout, "the sync and the backup under load", 0.05, services=services)
    loaded = sync_figures(catalog.pair(pair_id))
    backup_loaded = job_seconds(catalog.job(job_id))
    log(f"sync under load: {loaded['seconds']:.2f} s; backup under load: {backup_loaded:.2f} s")
    remaining = args.load_seconds - (time.monotonic() - logged_in)
    if remaining > 0:
        log(f"users go on clicking for {remaining:.0f} s more")
        stop.wait(remaining)
    stop.set()
    for user in users:
        user.join(150)
    load_end, cpu_end = time.monotonic(), cpu_now(services)
    cpu = [round(end - start, 1) for start, end in zip(cpu_start, cpu_end, strict=True)]
    stuck = [u.name for u in users if u.is_alive()]

    with stats.lock:
        requests = list(stats.requests)
        errors = list(stats.errors)
    pages = [r for r in requests if r[2] not in ("login form", "login")]
    logins = [r[4] for r in requests if r[2] == "login"]
    window_end = max(ends.values())
    during = [r[4] for r in pages if r[0] >= under_start and r[1] <= window_end]
    by_kind = {}
    for r in pages:
        by_kind.setdefault(r[2], []).append(r[4])
    statuses = {}
    for r in requests:
        statuses[str(r[3])] = statuses.get(str(r[3]), 0) + 1
    web_log = services[0].log()
    worker_log = services[1].log()
    n500, traceback = server_errors(web_log)
    page_times = [r[4] for r in pages]
    figures = {
        "name": "console_under_load",
        "users": args.users,
        "logins_failed": failed_logins,
        "requests": len(requests),
        "errors": len(errors) + len(stuck),
        "page_p50_ms": round(percentile(page_times, 50), 1) if page_times else None,
        "page_p99_ms": round(percentile(page_times, 99), 1) if page_times else None,
        "page_max_ms": round(max(page_times), 1) if page_times else None,
        "page_requests": len(pages),
        "requests_per_s": round(len(requests) / (load_end - load_start), 1),
        "load_seconds": round(load_end - load_start, 1),
        "login_ms": summary(logins),
        "while_sync_or_backup_ran": summary(during),
        "sync_alone_s": round(alone["seconds"], 3),
        "sync_under_load_s": round(loaded["seconds"], 3),
        "sync_slowdown": round(loaded["seconds"] / alone["seconds"], 2),
        "sync_alone_start_to_finish_s": round(alone["start_to_finish_seconds"], 3),
        "sync_under_load_start_to_finish_s": round(loaded["start_to_finish_seconds"], 3),
        "sync_bytes_total": loaded["bytes_total"],
        "sync_bytes_sent": loaded["bytes_sent"],
        "sync_errors_seen": [s["error_seen"] for s in (alone, loaded) if s["error_seen"]],
        "backup_alone_s": [round(s, 3) for s in backups_alone],
        "backup_under_load_s": round(backup_loaded, 3),
        "backup_slowdown": round(backup_loaded / statistics.mean(backups_alone), 2),
        "data_set_mib": args.mib,
        "data_set_files": files,
        "statuses": statuses,
        "server_500s_logged": n500,
        "worker_log_errors": len(re.findall(r"\] (?:ERROR|CRITICAL)/", worker_log)),
        # the tasks this run's worker took (another worker on the same broker database would take some)
        "worker_tasks_received": tasks_received(worker_log),
        "users_stuck": stuck,
        "per_kind": {k: summary(v) for k, v in sorted(by_kind.items())},
        # CPU seconds used during the load phase (the machine has cpu_count cores): the load generator
        # (this process, its users' threads), the web server, the worker (its pool processes included)
        "cpu_s_load_generator": cpu[0],
        "cpu_s_web_server": cpu[1],
        "cpu_s_worker": cpu[2],
        "cpu_count": os.cpu_count(),
        "think_s": args.think,
        "server": "manage.py runserver --noreload (threaded), DEBUG off, no static files fetched",
        "worker": "celery worker -Q <every queue>, concurrency 2, no beat",
        "database": "PostgreSQL",
        "broker": "Redis",
        "sync_time_is": "history_finished - history_started of the pair (the worker's historical sync)",
        "backup_time_is": "finished - started of the backup job (the worker)",
        "code": code_version(),
    }
    if errors:
        figures["first_errors"] = errors[:10]
    if traceback:
        figures["first_server_traceback"] = traceback
    return figures


def report(figures):
    print(
        f"load: {figures['users']} users, {figures['requests']} requests, {figures['errors']} errors, "
        f"p50 {figures['page_p50_ms']} ms, p99 {figures['page_p99_ms']} ms "
        f"(max {figures['page_max_ms']} ms, {figures['requests_per_s']} requests/s over {figures['load_seconds']} s; "
        f"logins p50 {figures['login_ms'].get('p50_ms')} ms)"
    )
    print(
        f"sync alone {figures['sync_alone_s']:.3f} s, under load {figures['sync_under_load_s']:.3f} s "
        f"(B/A = {figures['sync_slowdown']}x slower); backup alone "
        f"{', '.join(f'{s:.2f}' for s in figures['backup_alone_s'])} s, under load "
        f"{figures['backup_under_load_s']:.2f} s ({figures['backup_slowdown']}x)"
    )
    during = figures["while_sync_or_backup_ran"]
    print(
        f"while the sync or the backup ran: {during['n']} requests, "
        f"p50 {during.get('p50_ms')} ms, p99 {during.get('p99_ms')} ms"
    )
    print(f"statuses: {figures['statuses']}; server 500s logged: {figures['server_500s_logged']}")
    print(
        f"CPU seconds during the load ({figures['cpu_count']} cores, {figures['load_seconds']} s): "
        f"web server {figures['cpu_s_web_server']}, worker {figures['cpu_s_worker']}, "
        f"load generator {figures['cpu_s_load_generator']}"
    )
    for kind, s in figures["per_kind"].items():
        print(f"  {kind:34} {s['n']:6d}  p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms")
    for error in figures.get("first_errors", []):
        print(f"error: {json.dumps(error)[:600]}")
    if figures.get("first_server_traceback"):
        print(figures["first_server_traceback"])
    print(json.dumps(figures))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--mib", type=int, default=128, help="MiB of the data set synced and backed up")
    parser.add_argument("--load-seconds", type=float, default=30, help="users click at least this long")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of clicking before the sync starts")
    parser.add_argument("--think", type=float, nargs=2, default=[0.2, 0.5], metavar=("MIN", "MAX"))
    parser.add_argument("--timeout", type=float, default=600, help="for the sync and backup under load")
    parser.add_argument("--team-vaults", type=int, default=60, help="vaults of each team account (seed_scale)")
    parser.add_argument("--team-points", type=int, default=3000, help="points of each team account (seed_scale)")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x")
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/11", help="not db 15: the test suite's")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and the database")
    args = parser.parse_args()
    if urlsplit(args.broker).path.strip("/") == "15":
        parser.error("Redis database 15 belongs to the test suite")
    args.password = "bench-load-" + os.urandom(6).hex()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    (work / "tenants").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(
        DATABASE_URL=fresh_database(args.database_url, DB_NAME),
        CELERY_BROKER_URL=args.broker,
        CLOUD_BACKUP_DATA_DIR=str(work / "state"),
        BACKUP_PATH_ROOTS=str(work / "tenants"),
        DJANGO_SETTINGS_MODULE="console.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-load-" + os.urandom(16).hex(),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_HSTS_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    flush_broker(args.broker)
    services, catalog, stop = [], None, threading.Event()
    try:
        log(f"database {DB_NAME}, broker {args.broker}, work directory {work}")
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo")
        teams = [f"team{i:02d}" for i in range(1, max(1, -(-args.users // USERS_PER_TEAM)) + 1)]
        for team in teams:
            log(
                manage(
                    env,
                    "seed_scale",
                    "--region",
                    REGION,
                    "--account",
                    team,
                    "--vaults",
                    str(args.team_vaults),
                    "--points",
                    str(args.team_points),
                ).strip()
            )
        manage(
            {**env, "BENCH_USERS": str(args.users), "BENCH_TEAMS": ",".join(teams), "BENCH_PASSWORD": args.password},
            "shell",
            "-c",
            SEED_USERS,
        )
        queues = manage(env, "worker_queues").strip()
        args.port = free_port()
        services.append(
            Service(
                "web server",
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{args.port}"],
                env,
                work / "web.log",
            )
        )
        services.append(
            Service(
                "worker",
                [str(BIN / "celery"), "-A", "console", "worker", "-Q", queues, "--concurrency=2", "--loglevel=INFO"],
                env,
                work / "worker.log",
            )
        )

        def answers():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
                conn.request("GET", "/login/", headers={"Host": f"127.0.0.1:{args.port}"})
                return conn.getresponse().status == 200
            except OSError:
                return False

        wait_until(answers, 60, "the web server", services=services)
        wait_until(lambda: re.search(r"celery@\S+ ready\.", services[1].log()), 60, "the worker", services=services)
        log(f"web server on 127.0.0.1:{args.port}, worker ready")
        catalog = Catalog(env["DATABASE_URL"])
        figures = run(args, work, env, services, catalog, stop)
        figures["run_seconds"] = round(time.monotonic() - started, 1)
        report(figures)
        if figures["errors"]:
            sys.exit(1)
    finally:
        stop.set()
        if catalog is not None:
            catalog.close()
        for service in reversed(services):
            service.stop()
        if args.keep:
            log(f"kept {work} and the database {DB_NAME}")
        else:
            try:
                drop_database(args.database_url, DB_NAME)
            except Exception as exc:
                log(f"the database {DB_NAME} was not dropped: {exc}")
            try:
                flush_broker(args.broker)
            except Exception as exc:
                log(f"the broker was not flushed: {exc}")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
