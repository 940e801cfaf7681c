"""Replication benchmark: one JSON line per figure, on the embedded defaults.

    .venv/bin/python tests/bench/bench_replication.py [--size-mb 1024] [--lag-seconds 120]

Everything runs in a fresh CLOUD_BACKUP_DATA_DIR (SQLite, the embedded SQLite broker,
local directories as region stores); DATABASE_URL, CELERY_BROKER_URL and the
other store/queue variables are unset for this process and its children.

1. replication_full_sync: a source vault in cn-hangzhou holding a generated data
   set (half compressible text, half random, like bench_backup.py), backed up once
   by `manage.py backup --wait` in a child; replication to us-west-1 is started
   with a new target, and the sync runs in a child process that times it itself
   (no interpreter start counted): `manage.py replication sync PAIR --wait`, called
   in the child (the engine's sync_pair if the command is absent). Peak RSS comes
   from os.wait4. In the same run the source vault's directory is copied with
   shutil.copytree + fsync of each file, once before and twice after the sync;
   the median of the three is the reference.
2. replication_incremental: 1% of the bytes changed in scattered 64 KiB spots,
   backed up again, synced again in a child.
3. replication_lag: a real `celery worker` on a queue of its own; a new 10 MiB
   point every 2 s (backups run in this process), each commit enqueueing the
   sync; lag = target commit - source commit, per point.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_backup import change_spots, make_dataset, timed_raw_copy  # noqa: E402  (one data set for all benchmarks)

BIN = Path(sys.executable).parent
# Unset so that the run uses the embedded defaults inside its own data directory.
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
}

# Runs in a child: times the sync itself, so interpreter and Django start are not counted. The sync is
# `manage.py replication sync PAIR --wait` (called in the child) when the command exists, else the engine.
SYNC_CHILD = """
import io, json, sys, time
import django
django.setup()
from django.core.management import call_command, get_commands
if "replication" in get_commands():
    via, out = "manage.py replication sync --wait", io.StringIO()
    start = time.perf_counter()
    call_command("replication", "sync", sys.argv[1], "--wait", "--json", stdout=out)
    seconds = time.perf_counter() - start
    pair = json.loads(out.getvalue())
else:
    from replication.engine import sync_pair
    via = "replication.engine.sync_pair"
    start = time.perf_counter()
    p = sync_pair(sys.argv[1])
    seconds = time.perf_counter() - start
    pair = {"state": p.state, "error": p.error}
print(json.dumps({"seconds": seconds, "state": pair["state"], "error": pair["error"], "via": via}))
"""


def code_version():
    """The commit the run measured (the product changes under a long run: say which code was timed)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "console", "vaults", "replication", "restore"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+modified" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def tree_bytes(root):
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# -- child processes ------------------------------------------------------------------------------------


def run_child(args, env, profile=None):
    """Run a child, return (stdout, wall seconds, peak RSS in MiB); py-spy wraps it when profiling."""
    if profile:
        args = [str(BIN / "py-spy"), "record", "--threads", "-f", "raw", "-o", str(profile), "--", *args]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, rusage = os.wait4(proc.pid, 0)  # reaped here, not by Popen, for its rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        if status != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(map(str, args[:4]))} failed: {err.read().decode()[-3000:]}")
    return out, elapsed, rusage.ru_maxrss / 1024


def run_backup(env, vault_id, path):
    out, elapsed, rss = run_child(
        [sys.executable, "manage.py", "backup", "--vault", vault_id, "--wait", "--json", str(path)], env
    )
    result = json.loads(out)
    result["process_seconds"] = elapsed
    result["peak_rss_mib"] = rss
    return result


def run_sync(env, pair_id, profile=None):
    out, elapsed, rss = run_child([sys.executable, "-c", SYNC_CHILD, pair_id], env, profile)
    result = json.loads([line for line in out.decode().splitlines() if line.startswith("{")][-1])
    if result["error"] or result["state"] != "running":
        raise SystemExit(f"sync of {pair_id} ended {result}")
    result["process_seconds"] = elapsed
    result["peak_rss_mib"] = rss
    return result


# -- helpers that need Django (this process is set up after its environment is) ----------------------


def source_commit_times(point_ids):
    """The source commit instant of each point: its audit row `commit_point`, written in the commit."""
    from console.models import AuditLog

    return dict(
        AuditLog.objects.filter(action="commit_point", object_type="backup_point", object_id__in=point_ids)
        .order_by("created")
        .values_list("object_id", "created")
    )


def new_vault(name):
    from console.models import Account, Region
    from vaults.services import create_vault, initialize_vault_storage

    vault = create_vault(
        actor=None,
        account=Account.objects.get(slug="demo"),
        region=Region.objects.get(code="cn-hangzhou"),
        name=name,
    )
    vault = initialize_vault_storage(vault.id)
    assert vault is not None and vault.status == "normal", vault
    return vault


def start_pair(vault, target_name):
    from console.models import Region
    from replication.services import start_replication

    return start_replication(
        actor=None,
        source_vault=vault,
        destination_region=Region.objects.get(code="us-west-1"),
        create={
            "name": target_name,
            "description": "",
            "resource_group": None,
            "encryption_method": None,
            "kms_key": None,
        },
    )


def mean(values):
    return round(sum(values) / len(values), 2) if values else None


def percentile(values, q):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-q * len(ordered) // 100))
    return ordered[int(rank) - 1]


# -- the figures --------------------------------------------------------------------------------------


def bench_full_and_incremental(args, work, env, rng):
    from django.conf import settings

    from replication.models import ReplicatedPoint, ReplicationPair
    from vaults.models import BackupPoint

    size = args.size_mb << 20
    data = work / "data"
    files = make_dataset(data, size, rng)
    os.sync()
    vault = new_vault("bench-src")
    first = run_backup(env, vault.id, data)
    pair = start_pair(vault, "bench-target")
    vault_dir = Path(settings.OBJECT_STORE["root"]) / "cn-hangzhou" / vault.storage_prefix
    # The reference and the sync alternate (copy, sync, copy, copy): on a thin-provisioned disk the first
    # write into fresh space is slower than a rewrite of freed space, and each side gets its share of both.
    copies = [timed_raw_copy(vault_dir, work / "raw-copy")]

    full = run_sync(env, pair.id, profile=args.profile_dir and Path(args.profile_dir) / "full_sync.txt")
    pair.refresh_from_db()
    source_bytes = sum(BackupPoint.objects.filter(vault=vault, tier="standard").values_list("size", flat=True))
    target_dir = Path(settings.OBJECT_STORE["root"]) / "us-west-1" / pair.target_vault.storage_prefix
    stored = tree_bytes(vault_dir)
    copies += [timed_raw_copy(vault_dir, work / "raw-copy") for _ in range(2)]
    copy_seconds = sorted(copies)[1]
    sync_rate = stored / full["seconds"] / 1e6
    copy_rate = stored / copy_seconds / 1e6
    print(
        json.dumps(
            {
                "name": "replication_full_sync",
                "source_mb": round(source_bytes / 1e6, 1),
                "files": files,
                "stored_mb": round(stored / 1e6, 1),
                "seconds": round(full["seconds"], 2),
                "mb_per_s_source_data": round(source_bytes / full["seconds"] / 1e6, 1),
                "mb_per_s_stored": round(sync_rate, 1),
                "raw_copy_mb_per_s_stored": round(copy_rate, 1),
                "raw_copy_seconds": round(copy_seconds, 2),
                "raw_copy_runs_seconds": [round(c, 2) for c in copies],
                "ratio_to_raw_copy": round(sync_rate / copy_rate, 3),
                "bytes_sent": pair.bytes_sent,
                "target_stored_mb": round(tree_bytes(target_dir) / 1e6, 1),
                "peak_rss_mib": round(full["peak_rss_mib"], 1),
                "process_seconds": round(full["process_seconds"], 2),
                "backup_seconds": round(first["seconds"], 2),
                "rates_count": (
                    "mb_per_s_source_data: the source points' file bytes (sum of BackupPoint.size) per second of "
                    "the sync; mb_per_s_stored, raw_copy_mb_per_s_stored and ratio_to_raw_copy: the bytes stored "
                    "in the source vault's directory (packs, manifests, marker) per second, of the sync and of "
                    "copytree + fsync of that directory (the median of three copies: one before the sync, two after)"
                ),
                "timing": f"seconds: inside the child, around `{full['via']}`; process_seconds: with start-up",
                "code": args.code,
                **({"profiled": True} if args.profile_dir else {}),
            }
        ),
        flush=True,
    )

    changed = change_spots(data, 0.01, rng)
    second = run_backup(env, vault.id, data)
    sent_before = pair.bytes_sent
    incremental = run_sync(env, pair.id, profile=args.profile_dir and Path(args.profile_dir) / "incremental.txt")
    pair.refresh_from_db()
    copy = ReplicatedPoint.objects.get(pair=pair, source_point_id=second["id"])
    source_commit = source_commit_times([second["id"]])[second["id"]]
    print(
        json.dumps(
            {
                "name": "replication_incremental",
                "changed_bytes": changed,
                "source_stored_bytes": second["stored_bytes"],
                "bytes_sent": copy.bytes_sent,
                "sent_to_changed": round(copy.bytes_sent / changed, 2),
                "pair_bytes_sent_delta": pair.bytes_sent - sent_before,
                "commit_to_commit_seconds": round((copy.committed - source_commit).total_seconds(), 2),
                "sync_seconds": round(incremental["seconds"], 2),
                "sync_process_seconds": round(incremental["process_seconds"], 2),
                "peak_rss_mib": round(incremental["peak_rss_mib"], 1),
                "sync_via": incremental["via"],
                "code": args.code,
                "commit_times": (
                    "source: AuditLog(action='commit_point').created of the new point; target: "
                    "ReplicatedPoint.committed; in between: the backup child exits, then a sync child starts "
                    "(sync_process_seconds of it is interpreter and Django start-up plus the sync)"
                ),
                **({"profiled": True} if args.profile_dir else {}),
            }
        ),
        flush=True,
    )
    assert pair.state == ReplicationPair.State.RUNNING


class Worker:
    """A `celery worker` in a session of its own; stopped by its own id."""

    def __init__(self, env, queue, concurrency, log_path):
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "console",
                "worker",
                "-Q",
                queue,
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the worker exited: {self.log()[-3000:]}")
            if re.search(r"celery@\S+ ready\.", self.log()):
                return
            time.sleep(0.2)
        raise SystemExit(f"the worker did not start: {self.log()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its pool processes, if any are left
        except ProcessLookupError:
            pass
        self.proc.wait(15)


def wait_until(predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def bench_lag(args, work, env):
    from django.conf import settings

    from replication.models import ReplicatedPoint, ReplicationPair
    from vaults.models import SourceType
    from vaults.services import create_backup_source, run_backup_job, start_backup

    queue = "bench-replication-" + uuid.uuid4().hex[:8]
    # Syncs this process triggers (each commit's listener) go to the worker's queue; backup jobs stay on
    # the default queue nobody consumes here, as each backup runs in this process.
    settings.REPLICATION_QUEUE_TEMPLATE = queue
    worker_env = {**env, "REPLICATION_QUEUE_TEMPLATE": queue, "CELERY_DEFAULT_QUEUE": queue}
    worker = Worker(worker_env, queue, args.worker_concurrency, work / "worker.log")
    try:
        worker.wait_ready()
        vault = new_vault("bench-lag")
        pair = start_pair(vault, "bench-lag-target")  # its first (empty) sync runs on the worker
        if not wait_until(
            lambda: ReplicationPair.objects.filter(pk=pair.pk, state=ReplicationPair.State.RUNNING).exists(), 120
        ):
            raise SystemExit(f"the lag pair did not reach running: {worker.log()[-3000:]}")

        src = work / "lagdata"
        src.mkdir()
        source = create_backup_source(
            actor=None,
            account=vault.account,
            region=vault.region,
            source_type=SourceType.ON_PREMISES_FILE,
            name="bench-lag",
            path=str(src),
        )
        point_ids, backup_seconds, started, failed = [], [], [], []
        start = time.monotonic()
        ticks = max(1, int(args.lag_seconds / args.interval))
        for i in range(ticks):
            delay = start + i * args.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            started.append(time.monotonic())
            with open(src / f"p{i:04d}.bin", "wb") as f:
                f.write(os.urandom(args.point_mb << 20))
            job = start_backup(actor=None, vault=vault, source=source)
            point = run_backup_job(job.pk)
            backup_seconds.append(time.perf_counter() - t0)
            if point is None:  # reported, not fatal: the next point includes this one's file
                job.refresh_from_db()
                failed.append(f"point {i}: {job.error}"[:300])
                continue
            point_ids.append(point.id)
        last_commit = time.monotonic()

        def committed():
            return dict(
                ReplicatedPoint.objects.filter(
                    pair=pair, source_point_id__in=point_ids, state=ReplicatedPoint.State.COMMITTED
                ).values_list("source_point_id", "committed")
            )

        wait_until(lambda: len(committed()) == len(point_ids), args.catchup_timeout, interval=0.5)
        catchup = time.monotonic() - last_commit
        done = committed()
        sources = source_commit_times(point_ids)
        lags = [(done[p] - sources[p]).total_seconds() for p in point_ids if p in done]
        log = worker.log()
    finally:
        worker.stop()

    task_seconds = [float(s) for s in re.findall(r"sync_pair_task\[[^\]]+\] succeeded in ([0-9.]+)s", log)]
    pair.refresh_from_db()
    figure = {
        "name": "replication_lag",
        "points_attempted": len(started),
        "points": len(point_ids),
        "backups_failed": len(failed),
        "point_mb": args.point_mb,
        "interval_s": args.interval,
        "achieved_interval_s": round((started[-1] - started[0]) / (len(started) - 1), 2) if len(started) > 1 else None,
        "replicated": len(lags),
        "not_replicated": len(point_ids) - len(lags),
        "lag_p50_s": round(percentile(lags, 50), 2) if lags else None,
        "lag_p99_s": round(percentile(lags, 99), 2) if lags else None,
        "lag_max_s": round(max(lags), 2) if lags else None,
        "lag_first10_mean_s": mean(lags[:10]),
        "lag_last10_mean_s": mean(lags[-10:]),
        "catchup_after_last_commit_s": round(catchup, 2),
        "backup_s_p50": round(percentile(backup_seconds, 50), 2),
        "backup_s_max": round(max(backup_seconds), 2),
        "worker_concurrency": args.worker_concurrency,
        "sync_tasks_succeeded": len(task_seconds),
        "sync_task_s_p50": round(percentile(task_seconds, 50), 2) if task_seconds else None,
        "sync_task_s_max": round(max(task_seconds), 2) if task_seconds else None,
        "sync_task_s_first10_mean": mean(task_seconds[:10]),
        "sync_task_s_last10_mean": mean(task_seconds[-10:]),
        "worker_log_errors": len(re.findall(r"\] (?:ERROR|WARNING)/", log)),
        "pair_error": pair.error,
        "lag_is": (
            "ReplicatedPoint.committed (target commit) - AuditLog(action='commit_point').created of the source "
            "point (source commit), per point; percentiles are nearest-rank"
        ),
        "setup": "embedded SQLite broker (1 s polling), celery worker -Q <own queue>, no beat (no periodic reconcile)",
        "code": args.code,
    }
    if failed:
        figure["backup_failures"] = failed[:5]
    if figure["worker_log_errors"]:
        figure["worker_log_first_errors"] = [
            line[:300] for line in log.splitlines() if re.search(r"\] (?:ERROR|WARNING)/", line)
        ][:5]
    print(json.dumps(figure), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_SIZE_MB", "1024")))
    parser.add_argument("--lag-seconds", type=float, default=float(os.environ.get("BENCH_LAG_SECONDS", "120")))
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between new points (lag figure)")
    parser.add_argument("--point-mb", type=int, default=10, help="MiB of new random data per point (lag figure)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="as `make run`")
    parser.add_argument("--catchup-timeout", type=float, default=180)
    parser.add_argument("--skip", choices=["sync", "lag"], action="append", default=[])
    parser.add_argument("--profile-dir", help="run the sync children under py-spy, raw output here")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench"))
    parser.add_argument(
        "--settings", default="console.settings", help="DJANGO_SETTINGS_MODULE (experiments; default: the product's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (state, logs)")
    args = parser.parse_args()
    args.code = code_version()
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    base = Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["CLOUD_BACKUP_DATA_DIR"] = str(work / "state")
        env["DJANGO_SETTINGS_MODULE"] = args.settings
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [sys.executable, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )
        # This process uses the same state: the service calls and queries below, and the lag figure's backups.
        for key in UNSET:
            os.environ.pop(key, None)
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        if "sync" not in args.skip:
            bench_full_and_incremental(args, work, env, rng)
        if "lag" not in args.skip:
            bench_lag(args, work, env)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
