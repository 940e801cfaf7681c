"""Replication while the database drops the worker's connections mid-sync (PostgreSQL only).

The connections are really terminated by the server (pg_terminate_backend), as a failover
or a network cut would; the sync task fails, is retried, and the target ends with every
point once, byte-identical.
"""

import pytest
from django.db import connection

from console.models import AuditLog
from replication.models import ReplicatedPoint, ReplicationPair
from tests.conftest import wait_until
from tests.faults.test_replication_killed import big_source, files_of, replicate
from vaults.models import BackupPoint, Chunk

MiB = 1 << 20


def terminate_other_connections():
    """Kill every other session on the test database: the worker's included."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.worker
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's pg_terminate_backend")
def test_a_dropped_database_connection_mid_sync_loses_and_duplicates_nothing(
    celery_worker_process, make_vault, account, region, lrs_region, tmp_path
):
    # rules R8, R11: no lost, duplicate or partial point
    source_vault, _ = big_source(make_vault, account, region, tmp_path / "data", "db-drop-source", mib=60)
    pair = replicate(source_vault, lrs_region, "db-drop-target")
    target = pair.target_vault
    assert wait_until(lambda: Chunk.objects.filter(vault=target).exists(), timeout=60, interval=0.002)
    assert terminate_other_connections() >= 1
    assert wait_until(
        lambda: ReplicationPair.objects.get(pk=pair.pk).state == ReplicationPair.State.RUNNING, timeout=120
    ), ReplicationPair.objects.get(pk=pair.pk).error
    # the drop hit the sync: it failed, said so, and was retried
    assert AuditLog.objects.filter(action="replication_error", object_id=pair.id).exists()
    copies = ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED)
    assert copies.count() == 3 and BackupPoint.objects.filter(vault=target).count() == 3
    for copy in copies:
        assert files_of(copy.target_point) == files_of(BackupPoint.objects.get(pk=copy.source_point_id))
