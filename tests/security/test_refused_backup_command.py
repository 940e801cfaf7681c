"""A refused `manage.py backup` leaves nothing behind: no backup source, no job; the refusal is audited."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from console.models import AuditLog
from replication import services as replication_services
from vaults import services
from vaults.models import BackupJob, BackupSource, SourceType, VaultType


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr("vaults.services.backups._enqueue_backup", lambda job_id: None)
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "file.txt").write_bytes(b"payload\n")
    return root


def normal(vault):
    return services.initialize_vault_storage(vault.id)


def backup(*args):
    call_command("backup", *args, stdout=StringIO())


def refused_and_nothing_left(*args, match):
    sources, jobs = BackupSource.objects.count(), BackupJob.objects.count()
    with pytest.raises(CommandError, match=match):
        backup(*args)
    assert BackupSource.objects.count() == sources
    assert BackupJob.objects.count() == jobs


def refusals(action):
    return AuditLog.objects.filter(action=action, outcome=AuditLog.Outcome.REFUSED)


def test_into_a_replication_target_vault(make_vault, data):
    # rule R9: a target is read-only; the command asked before registering the path
    target = normal(make_vault("dr", vault_type=VaultType.REPLICATION_TARGET))
    refused_and_nothing_left("--vault", target.id, str(data), match="read-only")
    assert refusals("start_backup").get().object_id == target.id


def test_into_a_vault_not_normal(make_vault, data):
    initializing = make_vault("new")
    refused_and_nothing_left("--vault", initializing.id, str(data), match="Normal state")
    assert refusals("start_backup").get().object_id == initializing.id


def test_of_ecs_instance_data_into_a_replicated_vault(make_vault, lrs_region, data):
    # rule R7, a guard another app adds: refused before the source exists too
    vault = normal(make_vault("replicated"))
    replication_services.start_replication(
        actor=None,
        source_vault=vault,
        destination_region=lrs_region,
        create={"name": "copy", "resource_group": None, "encryption_method": None, "kms_key": None},
    )
    refused_and_nothing_left(
        "--vault", vault.id, "--source-type", SourceType.ECS_INSTANCE, str(data), match="backup policy"
    )


def test_of_another_accounts_directory(settings, make_vault, tmp_path):
    # rule T2: with BACKUP_PATH_ROOTS, a path outside <root>/<account>/ is refused, and registers nothing
    root = tmp_path / "roots"
    settings.BACKUP_PATH_ROOTS = [str(root)]
    theirs = root / "globex" / "data"
    theirs.mkdir(parents=True)
    vault = normal(make_vault())
    refused_and_nothing_left("--vault", vault.id, str(theirs), match="not under this account's directories")
    assert AuditLog.objects.filter(outcome=AuditLog.Outcome.REFUSED).count() == 1


@pytest.mark.parametrize("days", ["0", "-3", "36501", "soon"])
def test_with_a_retention_out_of_range(make_vault, data, days):
    vault = normal(make_vault())
    refused_and_nothing_left("--vault", vault.id, "--retention-days", days, str(data), match="retention")


def test_a_refusal_of_an_already_registered_source_adds_nothing(make_vault, account, region, data):
    vault = normal(make_vault())
    backup("--vault", vault.id, str(data))
    assert BackupSource.objects.count() == 1
    target = normal(make_vault("dr", vault_type=VaultType.REPLICATION_TARGET))
    refused_and_nothing_left("--vault", target.id, str(data), match="read-only")


def test_an_accepted_backup_still_registers_its_source(make_vault, data):
    vault = normal(make_vault())
    backup("--vault", vault.id, "--retention-days", "7", str(data))
    source = BackupSource.objects.get()
    assert source.path == str(data) and BackupJob.objects.get().source == source
