"""`manage.py replication start|status|stop|sync`: the same services and rules as the console, JSON for scripts."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from console.models import AuditLog
from replication import engine
from replication import services as replication_services
from replication.models import ReplicationPair
from tests.conftest import ROOT
from vaults import services as vault_services
from vaults.models import BackupPoint, EncryptionMethod, Vault, VaultType


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_json(*args):
    return json.loads(run(*args, "--json"))


def start_create(source_vault, name="dr-copy", region="us-west-1", *extra):
    return run_json(
        "replication", "start", "--source", source_vault.id, "--region", region, "--create-name", name, *extra
    )


def half_state_free(vaults_before, pairs_before=0):
    """A refusal leaves nothing behind: no pair, no vault."""
    assert ReplicationPair.objects.count() == pairs_before
    assert Vault.objects.count() == vaults_before


def test_start_creates_the_target(source_vault, lrs_region):
    # rules R2, R4, R6: "Create Replication Target Vault" from the command line
    group = source_vault.account.resource_groups.get()
    data = start_create(source_vault, "dr-copy", "us-west-1", "--description", "DR", "--resource-group", group.name)
    pair = ReplicationPair.objects.get(pk=data["id"])
    target = Vault.objects.get(pk=data["target_vault"])
    assert pair.source_vault == source_vault and pair.target_vault == target
    assert (target.name, target.description, target.vault_type, target.region) == (
        "dr-copy",
        "DR",
        VaultType.REPLICATION_TARGET,
        lrs_region,
    )
    assert target.encryption_method == source_vault.encryption_method  # rule R5
    assert (data["state"], data["source_vault"], data["target_region"]) == (
        "initializing",
        source_vault.id,
        "us-west-1",
    )
    assert AuditLog.objects.filter(action="start_replication", object_id=pair.id, outcome="success").exists()


def test_start_selects_a_free_target(source_vault, make_vault, lrs_region):
    # rules R2, R6: "Select Replication Target Vault"
    free = vault_services.initialize_vault_storage(
        make_vault("free", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    data = run_json("replication", "start", "--source", source_vault.id, "--region", "us-west-1", "--target", free.id)
    assert data["target_vault"] == free.id
    assert ReplicationPair.objects.get(pk=data["id"]).target_vault == free
    assert Vault.objects.count() == 2  # nothing created


def test_start_with_a_kms_key_of_the_destination(account, region, lrs_region, make_vault):
    # rule R5: KMS with KMS, a key of the destination region
    here = vault_services.create_kms_key(actor=None, account=account, region=region, alias="here")
    there = vault_services.create_kms_key(actor=None, account=account, region=lrs_region, alias="there")
    source = vault_services.initialize_vault_storage(
        make_vault("kms-src", encryption_method=EncryptionMethod.KMS, kms_key=here).id
    )
    vaults = Vault.objects.count()
    with pytest.raises(CommandError, match="kms_key"):
        start_create(source, "t", "us-west-1", "--kms-key", here.key_id)
    with pytest.raises(CommandError, match="kms_key: no KMS key nope"):
        start_create(source, "t", "us-west-1", "--kms-key", "nope")
    half_state_free(vaults)
    data = start_create(source, "t", "us-west-1", "--kms-key", there.key_id)
    target = Vault.objects.get(pk=data["target_vault"])
    assert (target.encryption_method, target.kms_key) == (EncryptionMethod.KMS, there)


def test_status_reports_real_progress_after_a_sync(source_vault, backup, lrs_region, tree):
    # rules R8, B1: progress (points, bytes, percentage), lag and bytes sent, from both regions
    first = backup(source_vault)
    (tree / "docs" / "more.txt").write_bytes(b"another point\n" * 3000)
    second = backup(source_vault)
    started = start_create(source_vault)
    before = run_json("replication", "status", source_vault.id)
    assert before["state"] == "initializing" and before["historical_progress"] == 0
    assert (before["points_total"], before["points_done"], before["bytes_sent"]) == (2, 0, 0)
    assert before["lag_seconds"] > 0 and before["last_replicated"] is None

    engine.sync_pair(started["id"])
    pair = ReplicationPair.objects.get(pk=started["id"])
    status = run_json("replication", "status", source_vault.id)
    assert status["id"] == pair.id
    assert (status["state"], status["source_vault"], status["target_vault"]) == (
        "running",
        source_vault.id,
        started["target_vault"],
    )
    assert status["historical_progress"] == 100 == pair.history_percent
    assert (status["points_total"], status["points_done"]) == (2, 2)
    assert status["bytes_total"] == status["bytes_done"] == first.size + second.size
    assert status["bytes_sent"] == pair.bytes_sent > 0
    assert status["lag_seconds"] == 0 and status["error"] == ""
    assert status["last_replicated"] == second.created.isoformat()
    assert status["points_replicated"] == 2 and status["points_pending"] == 0
    # the same pair from the destination region's side (rule R8: "in both regions")
    assert run_json("replication", "status", started["target_vault"]) == status
    assert "state: running" in run("replication", "status", source_vault.id)


def test_status_of_a_vault_never_replicated_is_a_clear_error(source_vault):
    with pytest.raises(CommandError, match=f"{source_vault.id} \\(source\\) has never been replicated"):
        run("replication", "status", source_vault.id)
    with pytest.raises(CommandError, match="No vault v-missing"):
        run("replication", "status", "v-missing")


def test_sync_wait_runs_the_engine_and_sync_queues_it(source_vault, backup, lrs_region, monkeypatch):
    # rule R8: the copy needs no user action; `sync` runs it now
    backup(source_vault)
    started = start_create(source_vault)
    queued = []
    monkeypatch.setattr(replication_services, "enqueue_sync", queued.append)
    data = run_json("replication", "sync", source_vault.id)
    assert queued == [started["id"]] and data["queued"] == "replication.us-west-1"
    data = run_json("replication", "sync", started["target_vault"], "--wait")
    assert (data["state"], data["historical_progress"], data["points_done"]) == ("running", 100, 1)
    assert BackupPoint.objects.filter(vault=started["target_vault"]).count() == 1


def test_stop_needs_yes_and_is_final(source_vault, backup, lrs_region):
    # rule R12: confirmation, audited, cannot be undone
    backup(source_vault)
    started = start_create(source_vault)
    engine.sync_pair(started["id"])
    with pytest.raises(CommandError, match="cannot be undone.*--yes"):
        run("replication", "stop", source_vault.id)
    assert ReplicationPair.objects.get(pk=started["id"]).state == "running"
    with pytest.raises(CommandError, match="target of .*stop it with the source vault"):
        run("replication", "stop", started["target_vault"], "--yes")
    assert ReplicationPair.objects.get(pk=started["id"]).state == "running"

    data = run_json("replication", "stop", source_vault.id, "--yes")
    pair = ReplicationPair.objects.get(pk=started["id"])
    assert data["state"] == "stopped" == pair.state and data["stopped"] == pair.stopped.isoformat()
    assert data["lag_seconds"] is None
    assert AuditLog.objects.filter(action="stop_replication", object_id=pair.id, outcome="success").count() == 1

    with pytest.raises(CommandError, match="already stopped"):
        run("replication", "stop", source_vault.id, "--yes")
    with pytest.raises(CommandError, match="stopped: a stopped replication never resumes"):
        run("replication", "sync", source_vault.id, "--wait")
    pair.refresh_from_db()
    assert pair.state == "stopped" and pair.stopped.isoformat() == data["stopped"]
    assert AuditLog.objects.filter(action="stop_replication", object_id=pair.id, outcome="refused").count() == 1
    assert run_json("replication", "status", source_vault.id)["state"] == "stopped"
    # the target is standalone now (rule R12): the source can be replicated again, to a new target
    again = start_create(source_vault, "dr-copy-2")
    assert again["id"] != pair.id and run_json("replication", "status", source_vault.id)["id"] == again["id"]


def test_stop_of_a_vault_never_replicated_is_refused(source_vault):
    with pytest.raises(CommandError, match="not replicated: there is nothing to stop"):
        run("replication", "stop", source_vault.id, "--yes")


def test_own_region_as_destination_is_refused(source_vault):
    # rules R2, R6
    with pytest.raises(CommandError, match="destination_region: The destination region must differ"):
        start_create(source_vault, "t", "cn-hangzhou")
    half_state_free(1)
    assert AuditLog.objects.filter(action="start_replication", outcome="refused").count() == 1


def test_sixth_replication_target_vault_in_a_region_is_refused(source_vault, make_vault, lrs_region):
    # rule R4
    for i in range(5):
        make_vault(f"rt-{i}", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET)
    with pytest.raises(CommandError, match="at most 5 are allowed"):
        start_create(source_vault, "sixth")
    half_state_free(6)


def test_second_target_of_a_source_is_refused(source_vault, make_vault, lrs_region):
    # rule R3
    first = start_create(source_vault)
    other = vault_services.initialize_vault_storage(
        make_vault("other", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    vaults = Vault.objects.count()
    with pytest.raises(CommandError, match="at most one replication target"):
        start_create(source_vault, "second")
    with pytest.raises(CommandError, match="at most one replication target"):
        run("replication", "start", "--source", source_vault.id, "--region", "us-west-1", "--target", other.id)
    half_state_free(vaults, pairs_before=1)
    assert ReplicationPair.objects.get().pk == first["id"]


def test_target_and_create_are_exclusive(source_vault, make_vault, lrs_region):
    # rule R6: select or create, not both
    with pytest.raises(CommandError, match="not allowed with argument"):
        run(
            "replication",
            "start",
            "--source",
            source_vault.id,
            "--region",
            "us-west-1",
            "--target",
            "x",
            "--create-name",
            "y",
        )
    with pytest.raises(CommandError, match="one of the arguments --target --create-name is required"):
        run("replication", "start", "--source", source_vault.id, "--region", "us-west-1")
    half_state_free(1)


def test_a_refusal_exits_non_zero_with_one_line_on_stderr(transactional_db, make_vault, monkeypatch):
    # rules R2, R6 through the real command line: non-zero exit, one line, nothing created
    monkeypatch.setattr(vault_services.vaults, "_enqueue_initialization", lambda vault_id: None)  # no worker here
    source_vault = vault_services.initialize_vault_storage(make_vault("source").id)
    db = connection.settings_dict
    url = (
        f"sqlite:///{db['NAME']}"
        if db["ENGINE"].endswith("sqlite3")
        else f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    args = [sys.executable, "manage.py", "replication", "start", "--source", source_vault.id]
    args += ["--region", "cn-hangzhou", "--create-name", "t", "--json"]
    result = subprocess.run(
        args, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "CommandError: destination_region: The destination region must differ from the source's region."
    ]
    assert result.stdout == ""
    half_state_free(1)
