"""The fault figures of the README's "Reliability" section: each test prints one line and asserts it.

1. 20 SIGKILLs of the worker (its process group, pool included) at random moments of a
   backup (7), of the historical sync of its points to another region (7) and of a restore
   from the replicated copy (6): no point lost, corrupt or duplicated, checked by SHA-256 of
   every file against the data set and by read-back of both vaults; the bytes written at the
   destination, counted by a proxy in front of its S3 endpoint (not by the pair's own
   counter), as a ratio to one full uninterrupted sync of the same points.
2. The destination's S3 endpoint answers 503, then 500, then times out (its connections
   dropped and no new one accepted, so clients' connects time out) for FAULT_SECONDS: the
   pair shows why it is paused, stays syncing, and completes once the endpoint is back.
3. Backup, sync and restore tasks delivered twice, at once, to two workers (and the sync
   more): one point per backup, one copy per point, one restore, and the traffic counted
   once, by the pair and at the destination.

4. While a destination fails, one retry of the pair's sync is pending at a time, whatever
   the reconcile and new points queue meanwhile: the retries are backed off
   (test_a_failing_pair_keeps_one_retry_pending_whatever_the_reconcile_queues).

Both regions' stores are buckets on moto's S3 server (the session's `moto_server`), each
behind an `S3Proxy` of its own (tests/faults/support.py) that counts every byte passing
and injects the faults. The data set is fixed (random, incompressible files of seeded
sizes and contents, FAULT_MIB MiB); the kill moments are random (FAULT_SEED replays a
run): each kill waits until the operation has transferred a random part (5 to 90 %) of
what it still has to, then up to 20 ms more, so it can land while reading, sealing,
uploading, indexing or committing.

In the suite FAULT_MIB is 32 and FAULT_SECONDS 12 (about 100 s in all). The README's
figures are run with

    FAULT_MIB=256 FAULT_SECONDS=48 .venv/bin/python -m pytest -s tests/faults/test_fault_figures.py

(a window of 48 s lets the timeouts surface: the product's S3 client tries a connect 4
times, 5 s each, before it reports one).
"""

import os
import random
import time
import uuid

import pytest
from django.utils import timezone

from console.celery import app
from console.jobs import HEARTBEAT_STALE
from console.models import AuditLog
from replication import services as replication_services
from replication.models import CrossRegionTraffic, ReplicatedPoint, ReplicationPair
from replication.tasks import reconcile_pairs_task, sync_pair_task
from restore import services as restore_services
from restore.models import RestoreJob
from restore.tasks import run_restore_job_task
from tests.conftest import WorkerProcess, wait_until
from tests.faults.support import (
    MiB,
    S3Proxy,
    point_hashes,
    seeded,
    serve_region_through,
    tree_hashes,
    write_random_files,
)
from tests.faults.test_replication_killed import assert_no_half_point, back_up, pair_of, replicate
from vaults import services as vault_services
from vaults.dataplane.objectstore import s3_client
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupJob, BackupPoint, Chunk, Tier, Vault, VaultStatus, VaultType
from vaults.tasks import run_backup_job_task

FAULT_MIB = int(os.environ.get("FAULT_MIB", "32"))
FAULT_SECONDS = float(os.environ.get("FAULT_SECONDS", "12"))
DATA_SEED = 20261130  # the fixed data set
BACKUP_KILLS, SYNC_KILLS, RESTORE_KILLS = 7, 7, 6


class Regions:
    """The two regions' buckets and the proxies in front of them."""

    def __init__(self, endpoint, source, destination, buckets):
        self.endpoint, self.source, self.destination, self.buckets = endpoint, source, destination, buckets

    def object_bytes(self, bucket, prefixes):
        """What the S3 server holds under `prefixes` (asked directly, not through a proxy)."""
        client = s3_client(self.endpoint, "testing", "testing")
        total = 0
        for prefix in prefixes:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                total += sum(o["Size"] for o in page.get("Contents", []))
        return total

    def empty_buckets(self):
        client = s3_client(self.endpoint, "testing", "testing")
        for bucket in self.buckets:
            try:
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                client.delete_bucket(Bucket=bucket)
            except Exception:  # never made (the test failed early): nothing to free
                pass


@pytest.fixture
def proxied_regions(settings, transactional_db, moto_server, region, lrs_region):
    """The source region's (cn-hangzhou) and the destination's (us-west-1) stores: buckets of their own on the
    loopback S3 server, each behind a proxy. Requested before `celery_worker_process`, whose environment
    takes the keys set here."""
    settings.OBJECT_STORE = {**settings.OBJECT_STORE, "access_key": "testing", "secret_key": "testing"}
    tag = uuid.uuid4().hex[:10]
    regions = Regions(moto_server, S3Proxy(moto_server), S3Proxy(moto_server), [f"ff-{tag}-src", f"ff-{tag}-dst"])
    serve_region_through(region, regions.source, regions.buckets[0])
    serve_region_through(lrs_region, regions.destination, regions.buckets[1])
    try:
        yield regions
    finally:
        regions.source.close()
        regions.destination.close()
        regions.empty_buckets()  # moto keeps its buckets in memory for the whole session


# -- the data set ---------------------------------------------------------------------------------------------


def data_set(tree, rng):
    """FAULT_MIB MiB of random files, and how much each later point changes."""
    write_random_files(tree, FAULT_MIB * MiB, rng)
    return max(MiB, FAULT_MIB * MiB // 32)


def change(tree, rng, n, size):
    """Point n's change: one file rewritten (n odd) or removed (n even), one added."""
    files = sorted(p for p in tree.iterdir() if p.is_file())
    victim = files[rng.randrange(len(files))]
    if n % 2:
        victim.write_bytes(rng.randbytes(victim.stat().st_size))
    else:
        victim.unlink()
    (tree / f"added-{n}.bin").write_bytes(rng.randbytes(size))


def ready_vault(make_vault, name, **kwargs):
    """A new vault, its storage made here or by the worker (whichever comes first)."""
    vault = make_vault(name, **kwargs)
    vault_services.initialize_vault_storage(vault.id)
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status == VaultStatus.NORMAL, timeout=60)
    return Vault.objects.select_related("region", "account").get(pk=vault.pk)


def data_prefixes(vault):
    """Where a vault's data goes: its packs and its manifests (not the marker written when it is made)."""
    return (vault.storage_prefix + "packs/", vault.storage_prefix + "manifests/")


def indexed(vault, field="length"):
    return sum(Chunk.objects.filter(vault=vault).values_list(field, flat=True))


def job_row(model, job_id):
    return model.objects.filter(pk=job_id).values("status", "attempt").get()


def claimed_anew(model, job_id, previous):
    row = job_row(model, job_id)
    return row["status"] == "running" and row["attempt"] not in ("", previous)


def mib(n):
    return f"{n / MiB:.1f} MiB"


# -- a kill at a random moment --------------------------------------------------------------------------------


def kill_once(worker, rng, counter, left, ended, what, seed):
    """SIGKILL the worker once `counter()` (bytes the operation moved through a proxy) has grown by a random
    5-90 % of `left` (what the run must still move at least), then after up to 20 ms more when the rest
    takes longer than that. Fails if the operation ends first (the kill would not land in it)."""
    threshold = counter() + max(1, int(rng.uniform(0.05, 0.9) * left))
    deadline = time.monotonic() + 120
    checked = 0.0
    while counter() < threshold:
        now = time.monotonic()
        assert now < deadline, f"seed {seed}: the {what} did not reach its kill moment in 120 s"
        if now - checked > 0.05:
            checked = now
            assert not ended(), f"seed {seed}: the {what} ended before its kill"
        time.sleep(0.0005)
    if 0.1 * left >= 4 * MiB:  # at least ~50 ms of transfer still to come: anywhere in it, or after
        time.sleep(rng.uniform(0, 0.02))
    worker.kill()


# -- 1. SIGKILLs --------------------------------------------------------------------------------------------


@pytest.mark.worker
def test_sigkills_in_a_backup_a_sync_and_a_restore_lose_corrupt_and_duplicate_no_point(
    proxied_regions, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules P3, R8, R11 (every point, the same data verified by hash, none partial), S4, B1
    seed, rng = seeded("FAULT_SEED")
    data = random.Random(DATA_SEED)
    src, dst = proxied_regions.source, proxied_regions.destination
    worker = celery_worker_process
    tree = tmp_path / "data"
    step = data_set(tree, data)
    total = sum(p.stat().st_size for p in tree.iterdir())
    expected = [tree_hashes(tree)]  # each point's files, by SHA-256

    # a backup of the whole data set, killed 7 times; each time its message is delivered again (as the broker
    # does with an unacknowledged one) once the job's heartbeat is stale, and the next attempt goes on
    vault = ready_vault(make_vault, "faults-source")
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="data", path=str(tree)
    )
    job = vault_services.start_backup(actor=None, vault=vault, source=source)
    attempt = ""
    for _ in range(BACKUP_KILLS):
        assert wait_until(lambda a=attempt: claimed_anew(BackupJob, job.pk, a), timeout=60, interval=0.002)
        attempt = job_row(BackupJob, job.pk)["attempt"]
        kill_once(
            worker,
            rng,
            lambda: src.live["PUT"],
            total - indexed(vault, "raw_length"),  # what the vault lacks: sent again in packs
            lambda: job_row(BackupJob, job.pk)["status"] != "running",
            "backup",
            seed,
        )
        assert job_row(BackupJob, job.pk)["status"] == "running"
        assert not BackupPoint.objects.filter(vault=vault).exists()  # no half point
        BackupJob.objects.filter(pk=job.pk).update(heartbeat=timezone.now() - 2 * HEARTBEAT_STALE)
        worker.start()
        run_backup_job_task.apply_async((job.pk,))
    assert wait_until(lambda: job_row(BackupJob, job.pk)["status"] != "running", timeout=120)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert BackupPoint.objects.filter(vault=vault).count() == 1

    # two more points, each with a change (uninterrupted)
    for n in (1, 2):
        change(tree, data, n, step)
        back_up(vault, source)
        expected.append(tree_hashes(tree))
    points = list(BackupPoint.objects.filter(vault=vault).order_by("created"))

    # the reference: one full uninterrupted sync of the three points (then stopped, so the source pairs again)
    reference = replicate(vault, lrs_region, "faults-reference")
    assert wait_until(lambda: pair_of(reference.id).state == ReplicationPair.State.RUNNING, timeout=120), pair_of(
        reference.id
    ).error
    one_sync = dst.put_bytes(data_prefixes(reference.target_vault))
    assert pair_of(reference.id).bytes_sent == one_sync  # nothing failed: the pair counted what the proxy saw
    manifest_size = {
        c.source_point_id: c.target_point.manifest_size
        for c in ReplicatedPoint.objects.filter(pair=reference).select_related("target_point")
    }
    replication_services.stop_replication(actor=None, pair=pair_of(reference.id))

    # the sync, killed 7 times; each time the worker is started again and the reconcile queues the sync
    pair = replicate(vault, lrs_region, "faults-target")
    target = pair.target_vault
    for _ in range(SYNC_KILLS):
        committed = set(
            ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED).values_list(
                "source_point_id", flat=True
            )
        )
        left = (indexed(reference.target_vault) - indexed(target)) + sum(
            size for point_id, size in manifest_size.items() if point_id not in committed
        )
        kill_once(
            worker,
            rng,
            lambda: dst.live["PUT"],
            left,
            lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING,
            "sync",
            seed,
        )
        assert pair_of(pair.id).state == ReplicationPair.State.SYNCING
        assert_no_half_point(pair.id, target)
        worker.start()
        replication_services.enqueue_sync(pair.id)
    assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=120), pair_of(
        pair.id
    ).error
    pair = pair_of(pair.id)

    # a restore of the newest point from its copy in the destination region, killed 6 times
    copies = {
        c.source_point_id: c.target_point
        for c in ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED).select_related(
            "target_point__vault__region"
        )
    }
    dest = tmp_path / "restored"
    dest.mkdir()
    restore_target = restore_services.create_restore_target(
        actor=None, account=account, region=lrs_region, kind="ecs-instance", name="dr", location=str(dest)
    )
    restore = restore_services.start_restore(actor=None, point=copies[points[-1].id], target=restore_target)
    sizes = {e: (tree / e).stat().st_size for e in expected[-1]}

    def restored():
        """The files under their final names (each must be whole and right: rule S4)."""
        return [n for n in os.listdir(dest) if not n.endswith(".part")]

    attempt = ""
    for _ in range(RESTORE_KILLS):
        assert wait_until(lambda a=attempt: claimed_anew(RestoreJob, restore.pk, a), timeout=60, interval=0.002)
        attempt = job_row(RestoreJob, restore.pk)["attempt"]
        kill_once(
            worker,
            rng,
            lambda: dst.live["GET"],
            sum(size for name, size in sizes.items() if name not in restored()),
            lambda: job_row(RestoreJob, restore.pk)["status"] != "running",
            "restore",
            seed,
        )
        assert job_row(RestoreJob, restore.pk)["status"] == "running"
        on_disk = tree_hashes(dest)
        assert all(on_disk[n] == expected[-1][n] for n in restored()), f"seed {seed}: an incomplete file"
        assert all(n.endswith(".part") for n in set(on_disk) - set(restored()))
        RestoreJob.objects.filter(pk=restore.pk).update(heartbeat=timezone.now() - 2 * HEARTBEAT_STALE)
        worker.start()
        run_restore_job_task.apply_async((restore.pk,))
    assert wait_until(lambda: job_row(RestoreJob, restore.pk)["status"] != "running", timeout=120)
    restore.refresh_from_db()
    assert restore.status == RestoreJob.Status.SUCCEEDED, restore.error

    # what is left: every point once, each file the data set's, and nothing else
    lost = corrupt = duplicated = 0
    standard = list(BackupPoint.objects.filter(vault=vault, tier=Tier.STANDARD).order_by("created"))
    duplicated += len(standard) - 3 + BackupPoint.objects.filter(vault=target).count() - 3
    lost += len([p for p in standard if p.id not in copies])
    rows = ReplicatedPoint.objects.filter(pair=pair)
    duplicated += rows.count() - rows.values("source_point_id").distinct().count()
    for n, point in enumerate(standard):
        for read in (point_hashes(point), point_hashes(copies[point.id]) if point.id in copies else {}):
            lost += len(set(expected[n]) - set(read))
            duplicated += len(set(read) - set(expected[n]))
            corrupt += sum(read[path] != digest for path, digest in expected[n].items() if path in read)
    corrupt += len(verify_vault(Vault.objects.get(pk=vault.pk))["problems"])
    corrupt += len(verify_vault(Vault.objects.get(pk=target.pk))["problems"])
    on_disk = tree_hashes(dest)
    lost += len(set(expected[-1]) - set(on_disk))
    duplicated += len(set(on_disk) - set(expected[-1]))  # a temporary file left over counts here too
    corrupt += sum(on_disk[path] != digest for path, digest in expected[-1].items() if path in on_disk)
    assert (lost, corrupt, duplicated) == (0, 0, 0), f"seed {seed}"
    assert restore.report["files_written"] + restore.files_skipped == len(expected[-1])

    # the bytes that reached the destination: whole objects the server took, and uploads a kill cut off
    written = dst.put_bytes(data_prefixes(target))
    taken = dst.put_bytes(data_prefixes(target), stored=True)
    held = proxied_regions.object_bytes(proxied_regions.buckets[1], data_prefixes(target))
    assert held == taken  # nothing the store took is lost (the orphans wait for garbage collection)
    # the pair counts every pack indexed and every manifest stored: at least this target's chunks and manifests
    its_sync = indexed(target) + sum(BackupPoint.objects.filter(vault=target).values_list("manifest_size", flat=True))
    assert its_sync <= pair.bytes_sent <= taken
    assert sum(CrossRegionTraffic.objects.filter(pair=pair).values_list("bytes_sent", flat=True)) == pair.bytes_sent
    print(
        f"\nfaults: {BACKUP_KILLS + SYNC_KILLS + RESTORE_KILLS} SIGKILLs ({SYNC_KILLS} sync, {BACKUP_KILLS} backup, "
        f"{RESTORE_KILLS} restore) over {FAULT_MIB} MiB: {lost} points lost, {corrupt} corrupt, {duplicated} "
        f"duplicated; destination bytes written {written / one_sync:.2f}x one full sync ({mib(one_sync)}): "
        f"{taken / one_sync:.2f}x taken by the store, {(written - taken) / one_sync:.2f}x uploads cut off by a kill; "
        f"the pair counted {pair.bytes_sent / one_sync:.2f}x (seed {seed})"
    )


# -- 2. a failing, then silent, destination -------------------------------------------------------------------


def kind_of_error(error):
    for word, kind in (("ServiceUnavailable", "503"), ("InternalError", "500"), ("timeout", "timeout")):
        if word.lower() in error.lower():
            return kind
    return error[:80]


@pytest.mark.worker
def test_a_destination_failing_and_timing_out_pauses_the_sync_with_its_reason_and_loses_nothing(
    proxied_regions, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules R8, R11: a failing copy shows why on the pair, leaves no point, and completes once it can
    data = random.Random(DATA_SEED)
    dst = proxied_regions.destination
    tree = tmp_path / "data"
    step = data_set(tree, data)
    vault = ready_vault(make_vault, "outage-source")
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="data", path=str(tree)
    )
    expected = {}
    for n in range(3):
        if n:
            change(tree, data, n, step)
        expected[back_up(vault, source).id] = tree_hashes(tree)

    pair = replicate(vault, lrs_region, "outage-target")
    target = pair.target_vault
    # the endpoint fails mid-sync: once a third of the data has reached it
    base = dst.live["PUT"]
    third = indexed(vault) // 3
    assert wait_until(lambda: dst.live["PUT"] - base >= third, timeout=60, interval=0.001)
    phases = (("503", FAULT_SECONDS / 4), ("500", FAULT_SECONDS / 4), ("timeout", FAULT_SECONDS / 2))
    seen, states = [], set()
    for fault, seconds in phases:
        dst.set_fault(fault)
        replication_services.enqueue_sync(pair.id)  # as the periodic reconcile does, without its minute
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            now = pair_of(pair.id)
            states.add(now.state)
            if now.error and (not seen or seen[-1] != now.error):
                seen.append(now.error)
            time.sleep(0.1)
    assert states == {ReplicationPair.State.SYNCING}, states
    assert seen, "the pair never said why it was not syncing"
    assert_no_half_point(pair.id, target)
    copied_during = ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED).count()
    assert copied_during < 3
    assert AuditLog.objects.filter(action="replication_error", object_id=pair.id, outcome="failed").exists()

    dst.set_fault(None)
    healed = time.monotonic()
    replication_services.enqueue_sync(pair.id)
    assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=180), pair_of(
        pair.id
    ).error
    after = time.monotonic() - healed
    pair = pair_of(pair.id)
    assert (pair.error, pair.error_since, pair.attempts) == ("", None, 0)
    assert (pair.history_points_total, pair.history_points_done) == (3, 3)

    copies = list(ReplicatedPoint.objects.filter(pair=pair).select_related("target_point__vault__region"))
    lost = 3 - len([c for c in copies if c.state == ReplicatedPoint.State.COMMITTED])
    duplicated = BackupPoint.objects.filter(vault=target).count() - 3 + len(copies) - 3
    corrupt = len(verify_vault(Vault.objects.get(pk=target.pk))["problems"])
    for copy in copies:
        read = point_hashes(copy.target_point)
        corrupt += sum(read.get(path) != digest for path, digest in expected[copy.source_point_id].items())
        duplicated += len(set(read) - set(expected[copy.source_point_id]))
    assert (lost, corrupt, duplicated) == (0, 0, 0)
    shown = ", ".join(dict.fromkeys(kind_of_error(e) for e in seen))
    assert dst.faults["syn"] > 0  # the timeouts were met: connects were tried and got no answer
    print(
        f"\nfaults: destination answered 503 for {phases[0][1]:.0f} s ({dst.faults['503']} requests), 500 for "
        f"{phases[1][1]:.0f} s ({dst.faults['500']}), then timed out for {phases[2][1]:.0f} s (connections dropped, "
        f"{dst.faults['syn']} connection attempts unanswered): sync paused with the reason shown ({shown}), "
        f"syncing throughout, {copied_during} of 3 points copied meanwhile; completed {after:.1f} s after the "
        f"endpoint came back; {lost} points lost, {corrupt} corrupt, {duplicated} duplicated ({FAULT_MIB} MiB)"
    )


# -- 3. a task delivered twice --------------------------------------------------------------------------------


def task_lines(logs, task, word):
    """How many times the workers' logs say `task` was "received" or "succeeded"."""
    marks = {"received": "] received", "succeeded": "] succeeded in "}[word]
    return sum(
        f"Task {task}[" in line and marks in line
        for log in logs
        if log.exists()
        for line in log.read_text(errors="replace").splitlines()
    )


@pytest.mark.worker
def test_tasks_delivered_twice_make_one_point_one_copy_and_count_traffic_once(
    proxied_regions, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules P3, R11 (no point twice), S4, B1 (the bytes sent between regions counted once)
    data = random.Random(DATA_SEED)
    src, dst = proxied_regions.source, proxied_regions.destination
    first = celery_worker_process
    second = WorkerProcess(first.env, first.queue, tmp_path / "worker-2.log")
    logs = [tmp_path / "worker.log", tmp_path / "worker-2.log"]
    try:
        assert wait_until(lambda: all(log.exists() and " ready." in log.read_text() for log in logs), timeout=60)
        tree = tmp_path / "data"
        step = data_set(tree, data)
        vault = ready_vault(make_vault, "twice-source")
        source = vault_services.create_backup_source(
            actor=None, account=account, region=region, source_type="ecs-file", name="data", path=str(tree)
        )
        expected = {}

        # a backup: its message and a copy of it, at once, one to each worker; a third after it ended
        job = vault_services.start_backup(actor=None, vault=vault, source=source)
        run_backup_job_task.apply_async((job.pk,))
        assert wait_until(lambda: job_row(BackupJob, job.pk)["status"] not in ("queued", "running"), timeout=120)
        job.refresh_from_db()
        assert job.status == BackupJob.Status.SUCCEEDED, job.error
        run_backup_job_task.apply_async((job.pk,))
        expected[job.point_id] = tree_hashes(tree)
        backup_task = "vaults.tasks.run_backup_job_task"
        assert wait_until(lambda: task_lines(logs, backup_task, "succeeded") == 3, timeout=60)
        change(tree, data, 1, step)
        expected[back_up(vault, source).id] = tree_hashes(tree)
        assert BackupPoint.objects.filter(vault=vault).count() == 2
        source_written = src.put_bytes(data_prefixes(vault))
        assert source_written == proxied_regions.object_bytes(proxied_regions.buckets[0], data_prefixes(vault))

        # the sync: start_replication's message, a copy of it and the reconcile's, at once; one more after
        pair = replicate(vault, lrs_region, "twice-target")
        sync_pair_task.apply_async((pair.id,), queue=first.queue)
        replication_services.enqueue_sync(pair.id)
        assert wait_until(lambda: pair_of(pair.id).state == ReplicationPair.State.RUNNING, timeout=120), pair_of(
            pair.id
        ).error
        sync_task = "replication.tasks.sync_pair_task"
        assert wait_until(lambda: task_lines(logs, sync_task, "succeeded") == 3, timeout=60)
        sync_pair_task.apply_async((pair.id,), queue=first.queue)
        assert wait_until(lambda: task_lines(logs, sync_task, "succeeded") == 4, timeout=60)
        pair = pair_of(pair.id)
        target = pair.target_vault
        assert (pair.sync_owner, pair.sync_wanted) == ("", False)

        # a restore of the newest copy: its message and a copy of it, at once
        copies = ReplicatedPoint.objects.filter(pair=pair).select_related("target_point__vault__region")
        newest = copies.order_by("-source_created").first().target_point
        dest = tmp_path / "restored"
        dest.mkdir()
        restore_target = restore_services.create_restore_target(
            actor=None, account=account, region=lrs_region, kind="ecs-instance", name="dr", location=str(dest)
        )
        restore = restore_services.start_restore(actor=None, point=newest, target=restore_target)
        run_restore_job_task.apply_async((restore.pk,))
        restore_task = "restore.tasks.run_restore_job_task"
        assert wait_until(lambda: task_lines(logs, restore_task, "succeeded") == 2, timeout=120)
        restore.refresh_from_db()
        assert restore.status == RestoreJob.Status.SUCCEEDED, restore.error
        both = [t for t in (backup_task, sync_task, restore_task) if all(task_lines([g], t, "received") for g in logs)]
    finally:
        second.stop()

    # one point per backup, one copy per point, one restore, each byte-identical
    assert BackupPoint.objects.filter(vault=vault).count() == 2 and BackupJob.objects.filter(vault=vault).count() == 2
    assert copies.count() == 2 and all(c.state == ReplicatedPoint.State.COMMITTED for c in copies)
    assert BackupPoint.objects.filter(vault=target).count() == 2
    for copy in copies:
        assert point_hashes(copy.target_point) == expected[copy.source_point_id]
    assert verify_vault(Vault.objects.get(pk=target.pk))["problems"] == []
    assert tree_hashes(dest) == expected[copies.order_by("-source_created").first().source_point_id]
    assert restore.files_skipped == 0 and restore.report["files_written"] == len(os.listdir(dest))

    # the traffic, counted once: by the pair, per day, and at the destination (every byte PUT once)
    written = dst.put_bytes(data_prefixes(target))
    held = proxied_regions.object_bytes(proxied_regions.buckets[1], data_prefixes(target))
    per_day = sum(CrossRegionTraffic.objects.filter(pair=pair).values_list("bytes_sent", flat=True))
    assert pair.bytes_sent == per_day == written == held
    assert all(e.stored for e in dst.done("PUT", data_prefixes(target)))  # no upload failed and was sent again
    workers = "to two workers" if len(both) == 3 else f"{len(both)} of the 3 to two workers"
    print(
        f"\nfaults: backup, sync and restore tasks each delivered twice at once ({workers}; the sync 3 times, then "
        f"once more; the backup once more): 1 point per backup, 1 copy per point, 1 restore; traffic counted once: "
        f"pair {mib(pair.bytes_sent)} = per day {mib(per_day)} = written at the destination {mib(written)} = held "
        f"there {mib(held)} ({written / held:.2f}x one sync of {FAULT_MIB} MiB)"
    )


# -- a product bug: the reconcile multiplies the retries of a failing pair ------------------------------------


def retry_chains(pair_id):
    """The sync tasks of a pair the workers hold (waiting for their retry time, reserved or running), by id: a
    task keeps its id through its retries, so each id is one chain of attempts."""
    inspect = app.control.inspect(timeout=2.0, limit=1)  # one worker: its answer is all there is
    held = []
    for answer in (inspect.scheduled() or {}, inspect.reserved() or {}, inspect.active() or {}):
        for tasks in answer.values():
            held += [t.get("request", t) for t in tasks]
    return {t["id"] for t in held if t["name"] == "replication.tasks.sync_pair_task" and list(t["args"]) == [pair_id]}


@pytest.mark.worker
def test_a_failing_pair_keeps_one_retry_pending_whatever_the_reconcile_queues(
    proxied_regions, celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # README: failures "are retried with backoff"; the reconcile is there for syncs whose message was lost
    dst = proxied_regions.destination
    tree = tmp_path / "data"
    write_random_files(tree, 2 * MiB, random.Random(DATA_SEED))
    vault = ready_vault(make_vault, "retry-source")
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="data", path=str(tree)
    )
    back_up(vault, source)
    target = ready_vault(make_vault, "retry-target", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET)
    dst.set_fault("503")  # the destination fails for good: every sync attempt fails in well under a second
    pair = replication_services.start_replication(
        actor=None, source_vault=vault, destination_region=lrs_region, target_vault=target
    )
    assert wait_until(lambda: pair_of(pair.id).retry_at is not None, timeout=60)  # failed once: a retry waits
    passes = 5
    for _ in range(passes):  # five minutes of beat, without the minutes: the scheduled retry is left to run
        attempts = pair_of(pair.id).attempts
        reconcile_pairs_task()
        time.sleep(1)
        assert pair_of(pair.id).attempts == attempts
    for _ in range(passes):  # new points trigger syncs: each attempt fails, and schedules no retry of its own
        attempts = pair_of(pair.id).attempts
        replication_services.enqueue_sync(pair.id)
        assert wait_until(lambda a=attempts: pair_of(pair.id).attempts > a, timeout=60)
    time.sleep(2)  # the last of those attempts has ended: what the worker holds now is the retries scheduled
    assert pair_of(pair.id).state == ReplicationPair.State.SYNCING and "ServiceUnavailable" in pair_of(pair.id).error
    chains = retry_chains(pair.id)
    assert len(chains) <= 1, f"{len(chains)} chains of retries of one failing pair after {passes} reconcile passes"
    print(f"retries: a failing pair, {passes} reconcile passes and {passes} new syncs: {len(chains)} retry pending")
