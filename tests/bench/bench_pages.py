"""Console pages at scale: one JSON line per page, server time against the same page of a tiny account.

    .venv/bin/python tests/bench/bench_pages.py [--vaults 1000] [--points 100000]

Makes a fresh PostgreSQL database (DATABASE_URL's server, default the local one),
seeds an account with `manage.py seed_scale` (1,000 vaults and 100,000 points in
one region, a tenth of them in one vault) and a tiny account (one vault, ten points)
as the reference, then loads every list page of both with Django's test client, in a
child process with DEBUG off: the median of five loads after one warm-up, and the
queries each page ran. The target is a median of at most 100 ms at scale.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
TARGET_MS = 100
RUNS = 5

MEASURE = """
import json, statistics, time
import django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.contrib.auth import get_user_model
from vaults.models import BackupPoint, Vault

def pages(slug):
    vault = Vault.objects.filter(account__slug=slug).order_by("name").first()
    point = BackupPoint.objects.filter(vault=vault, tier="standard").order_by("created").first()
    code = vault.region.code
    create = reverse("restore:create", args=[code])
    detail = reverse("vaults:detail", args=[code, vault.id])
    return {
        "Storage Vaults": reverse("vaults:list", args=[code]),
        "a vault page": detail,
        "a vault page, the oldest": detail + "?page=99999",
        "a vault page, a month": detail + "?created_from={d:%Y-%m}-01&created_to={d:%Y-%m}-28".format(d=point.created),
        "Backup Jobs": reverse("backups:list", args=[code]),
        "Restore Jobs": reverse("restore:list", args=[code]),
        "Create restore job": create,
        "Create restore job, a vault chosen": f"{create}?vault={vault.id}",
        "Create restore job, a point chosen": f"{create}?vault={vault.id}&point={point.id}",
        "Backup Sources": reverse("backups:sources", args=[code]),
        "Restore Targets": reverse("restore:targets", args=[code]),
        "Audit Log": reverse("console:audit-log", args=[code]),
        "Usage & Billing": reverse("console:usage", args=[code]),
    }

def measure(slug):
    client = Client()
    client.force_login(get_user_model().objects.get(username=slug))
    figures = {}
    for name, url in pages(slug).items():
        assert client.get(url).status_code == 200, (name, url)
        runs = []
        for _ in range(RUNS):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                runs.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (name, url, response.status_code)
        figures[name] = (statistics.median(runs), runs, len(queries), len(response.content))
    return figures

print(json.dumps({"tiny": measure("tiny"), "scale": measure("scale")}))
"""


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def fresh_database(server_url, name):
    """A new, empty database on the server of `server_url`; returns its URL."""
    import psycopg

    parts = urlsplit(server_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))


def analyze(url):
    """Planner statistics after a bulk load, as autovacuum would have them a minute later."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vaults", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100000)
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x")
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(
        DATABASE_URL=fresh_database(args.database_url, "cloud_backup_bench_pages"),
        CLOUD_BACKUP_DATA_DIR=str(work),
        DJANGO_SETTINGS_MODULE="console.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-pages-" + os.urandom(8).hex(),
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_SSL_REDIRECT="0",
    )
    manage(env, "migrate", "-v0")
    start = time.perf_counter()
    seeded = manage(
        env,
        "seed_scale",
        "--region",
        args.region,
        "--account",
        "scale",
        "--password",
        "bench",
        "--vaults",
        str(args.vaults),
        "--points",
        str(args.points),
    ).strip()
    seed_seconds = time.perf_counter() - start
    manage(
        env,
        "seed_scale",
        "--region",
        args.region,
        "--account",
        "tiny",
        "--password",
        "bench",
        "--vaults",
        "1",
        "--points",
        "10",
    )
    analyze(env["DATABASE_URL"])
    print(json.dumps({"name": "pages_seed", "seeded": seeded, "seconds": round(seed_seconds, 1)}))
    script = f"RUNS = {RUNS}\n" + MEASURE
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    figures = json.loads(out)
    worst = 0
    for page, (median, runs, queries, size) in figures["scale"].items():
        reference = figures["tiny"][page][0]
        worst = max(worst, median)
        print(
            json.dumps(
                {
                    "name": "page",
                    "page": page,
                    "median_ms": round(median, 1),
                    "runs_ms": [round(r, 1) for r in runs],
                    "queries": queries,
                    "kb": round(size / 1024, 1),
                    "tiny_account_ms": round(reference, 1),
                    "ratio_to_tiny": round(median / reference, 2),
                    "tiny_account_queries": figures["tiny"][page][2],
                }
            )
        )
    print(
        json.dumps(
            {"name": "pages_worst_median_ms", "ms": round(worst, 1), "target_ms": TARGET_MS, "met": worst <= TARGET_MS}
        )
    )


if __name__ == "__main__":
    main()
