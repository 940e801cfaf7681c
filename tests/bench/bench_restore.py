"""Restore benchmark: one JSON line per figure, against a raw copy of the same files in the same run.

    .venv/bin/python tests/bench/bench_restore.py [--size-mb 1024]

Backs the generated data set up into a local-directory vault, replicates it to a
replication target vault in another region, then restores the point from each
vault into an empty directory with `manage.py restore start --wait` in a child
process (for its peak RSS); the reference is shutil.copytree + fsync of the files.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_backup import make_dataset, timed_raw_copy  # noqa: E402


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def django_call(env, code):
    script = "import django, json; django.setup()\n" + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def timed_restore(env, point_id, target_id):
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "restore", "start", point_id, "--target", str(target_id), "--wait", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"restore failed: {err.decode()[-2000:]}")
    return json.loads(out), rusage


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_SIZE_MB", "1024")))
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench"))
    args = parser.parse_args()
    size = args.size_mb << 20
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        data = work / "data"
        make_dataset(data, size, random.Random(7))
        copies = [timed_raw_copy(data, work / "copy")]  # alternated with the restores: copy, restore, copy, ...
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
        env.update(CLOUD_BACKUP_DATA_DIR=str(work / "state"), DJANGO_SETTINGS_MODULE="console.settings")
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo")
        vault = json.loads(
            manage(env, "vault", "create", "--account", "demo", "--region", "cn-hangzhou", "--name", "bench", "--json")
        )["id"]
        django_call(env, f"from vaults.services import initialize_vault_storage as i; i({vault!r})")
        point = json.loads(
            manage(env, "backup", "--vault", vault, "--source-type", "nas", "--wait", "--json", str(data))
        )["id"]
        replica = django_call(
            env,
            f"""
from console.models import Region
from vaults.models import Vault, BackupPoint
from replication import services, engine
pair = services.start_replication(actor=None, source_vault=Vault.objects.get(pk={vault!r}),
    destination_region=Region.objects.get(code="us-west-1"),
    create={{"name": "bench-target", "description": "", "resource_group": None, "encryption_method": None,
            "kms_key": None}})
engine.sync_pair(pair.id)
print(BackupPoint.objects.get(vault=pair.target_vault).id)
""",
        )
        restores = []
        for label, point_id, region in (
            ("general_vault", point, "cn-hangzhou"),
            ("replication_target_vault", replica, "us-west-1"),
        ):
            dest = work / f"restore-{label}"
            dest.mkdir()
            target = json.loads(
                manage(
                    env,
                    "restore",
                    "target",
                    "create",
                    "--account",
                    "demo",
                    "--region",
                    region,
                    "--kind",
                    "nas",
                    "--location",
                    str(dest),
                    "--name",
                    label,
                    "--json",
                )
            )
            start = time.perf_counter()
            result, rusage = timed_restore(env, point_id, target["id"])
            wall = time.perf_counter() - start
            shutil.rmtree(dest)
            copies.append(timed_raw_copy(data, work / "copy"))
            restores.append((label, result, wall, rusage))
        raw_mbps = size / sorted(copies)[1] / 1e6
        print(
            json.dumps(
                {
                    "name": "restore_reference_raw_copy",
                    "mb": round(size / 1e6, 1),
                    "mb_per_s": round(raw_mbps, 1),
                    "runs_seconds": [round(c, 2) for c in copies],
                    "reference": "the median of three copies: before, between and after the two restores",
                }
            )
        )
        for label, result, wall, rusage in restores:
            mbps = size / result["seconds"] / 1e6
            print(
                json.dumps(
                    {
                        "name": f"restore_from_{label}",
                        "mb_per_s": round(mbps, 1),
                        "ratio_to_raw_copy": round(mbps / raw_mbps, 2),
                        "files": result["files"],
                        "seconds": round(result["seconds"], 2),
                        "process_seconds": round(wall, 2),
                        "peak_rss_mib": round(rusage.ru_maxrss / 1024, 1) if rusage else None,
                    }
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
