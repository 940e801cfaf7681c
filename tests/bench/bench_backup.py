"""Backup benchmark: one JSON line per figure, ratios against a raw copy measured in the same run.

    .venv/bin/python tests/bench/bench_backup.py [--size-mb 1024]

Generates a data set (half compressible text, half random bytes, in files of
64 KiB to 64 MiB), copies it with shutil.copytree + fsync (the reference), then
backs it up three times into a local-directory vault with `manage.py backup
--wait` in a child process (for its peak RSS): first, unchanged, and after
changing 1% of the bytes in scattered 64 KiB spots.
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
SPOT = 64 * 1024
WORDS = b"vault replication region backup restore chunk manifest archive retention policy lock ".split()


def make_dataset(root, size, rng):
    root.mkdir(parents=True)
    written, n = 0, 0
    sizes = [64 * 1024, 512 * 1024, 4 << 20, 16 << 20, 64 << 20]
    while written < size:
        file_size = min(rng.choice(sizes), size - written)
        sub = root / f"d{n % 7}" / f"e{n % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{n:05d}.bin"
        with open(path, "wb") as f:
            if n % 2:
                f.write(os.urandom(file_size))
            else:
                line = b" ".join(rng.choice(WORDS) for _ in range(4000)) + b"\n"
                data = (line * (file_size // len(line) + 1))[:file_size]
                f.write(data)
        written += file_size
        n += 1
    return n


def raw_copy(src, dst):
    start = time.perf_counter()

    def copy_and_sync(s, d):
        shutil.copy2(s, d)
        with open(d, "rb") as f:
            os.fsync(f.fileno())

    shutil.copytree(src, dst, copy_function=copy_and_sync)
    return time.perf_counter() - start


def timed_raw_copy(src, dst):
    """Seconds of one reference copy (copytree + fsync), from a synced disk; the copy is removed after.

    Benchmarks alternate reference copies with the operation they time (copy, operation, copy,
    copy) and take the median copy: this disk writes fresh space several times slower than
    space it just freed, and each side gets its share of both.
    """
    os.sync()
    seconds = raw_copy(src, dst)
    shutil.rmtree(dst)
    os.sync()
    return seconds


def change_spots(root, fraction, rng):
    files = sorted(p for p in root.rglob("*.bin") if p.stat().st_size > 2 * SPOT)
    total = sum(p.stat().st_size for p in root.rglob("*.bin"))
    spots = max(1, int(total * fraction) // SPOT)
    changed = 0
    for _ in range(spots):
        path = rng.choice(files)
        size = path.stat().st_size
        offset = rng.randrange(0, size - SPOT)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(os.urandom(SPOT))
        changed += SPOT
    return changed


def run_backup(env, vault_id, path):
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "backup", "--vault", vault_id, "--wait", "--json", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"backup failed: {err.decode()[-2000:]}")
    result = json.loads(out)
    result["process_seconds"] = elapsed
    result["peak_rss_mib"] = rusage.ru_maxrss / 1024
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_SIZE_MB", "1024")))
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench"))
    args = parser.parse_args()
    size = args.size_mb << 20
    rng = random.Random(42)
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        data = work / "data"
        files = make_dataset(data, size, rng)
        copies = [timed_raw_copy(data, work / "copy")]

        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
        env["CLOUD_BACKUP_DATA_DIR"] = str(work / "state")
        env["DJANGO_SETTINGS_MODULE"] = "console.settings"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [sys.executable, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )
        vault = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "vault",
                    "create",
                    "--account",
                    "demo",
                    "--region",
                    "cn-hangzhou",
                    "--name",
                    "bench",
                    "--json",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            ).stdout
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from vaults.services import "
                f"initialize_vault_storage as i; assert i({vault['id']!r}).status == 'normal'",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )

        first = run_backup(env, vault["id"], data)
        copies += [timed_raw_copy(data, work / "copy") for _ in range(2)]
        raw_mbps = size / sorted(copies)[1] / 1e6
        print(
            json.dumps(
                {
                    "name": "raw_copy",
                    "mb": size / 1e6,
                    "files": files,
                    "mb_per_s": round(raw_mbps, 1),
                    "runs_seconds": [round(c, 2) for c in copies],
                    "reference": "the median of three copies: one before the first backup, two after",
                }
            )
        )
        mbps = size / first["seconds"] / 1e6
        print(
            json.dumps(
                {
                    "name": "backup_first",
                    "mb_per_s": round(mbps, 1),
                    "ratio_to_raw_copy": round(mbps / raw_mbps, 2),
                    "stored_mb": round(first["stored_bytes"] / 1e6, 1),
                    "peak_rss_mib": round(first["peak_rss_mib"], 1),
                    "seconds": round(first["seconds"], 2),
                }
            )
        )
        second = run_backup(env, vault["id"], data)
        print(
            json.dumps(
                {
                    "name": "backup_unchanged",
                    "mb_per_s": round(size / second["seconds"] / 1e6, 1),
                    "stored_bytes": second["stored_bytes"],
                    "peak_rss_mib": round(second["peak_rss_mib"], 1),
                    "seconds": round(second["seconds"], 2),
                }
            )
        )
        changed = change_spots(data, 0.01, rng)
        third = run_backup(env, vault["id"], data)
        print(
            json.dumps(
                {
                    "name": "backup_after_1pct_change",
                    "changed_bytes": changed,
                    "stored_bytes": third["stored_bytes"],
                    "stored_to_changed": round(third["stored_bytes"] / changed, 2),
                    "mb_per_s": round(size / third["seconds"] / 1e6, 1),
                    "peak_rss_mib": round(third["peak_rss_mib"], 1),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
