"""Restores that must be refused (rules S1, S2, S3, A1, archive tier): a ValidationError, no job row,
an audit row with outcome refused; and the targets offered for a point (rule S1)."""

import pytest
from django.core.exceptions import ValidationError

from console.models import AuditLog
from restore import services
from restore.models import KIND_FOR_SOURCE, RestoreJob, TargetKind
from tests.restore.conftest import (
    back_up,
    local_bucket_dir,
    make_source,
    make_target,
    replicate,
    restore_ok,
    write,
)
from vaults import services as vault_services
from vaults.models import BackupPoint, SourceType, Tier


def assert_refused(point, target, *words):
    jobs_before = RestoreJob.objects.count()
    refusals_before = AuditLog.objects.filter(action="start_restore", outcome=AuditLog.Outcome.REFUSED).count()
    with pytest.raises(ValidationError) as excinfo:
        services.start_restore(actor=None, point=point, target=target)
    message = " ".join(excinfo.value.messages)
    for word in words:
        assert word.lower() in message.lower(), message
    assert RestoreJob.objects.count() == jobs_before  # no job row
    refusals = AuditLog.objects.filter(action="start_restore", outcome=AuditLog.Outcome.REFUSED)
    assert refusals.count() == refusals_before + 1
    row = refusals.first()
    assert row.object_id == point.id and row.account_id == point.vault.account_id
    assert row.region_code == point.vault.region.code
    assert row.detail["reason"] == message
    return message


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    write(root / "a.txt", b"alpha\n" * 100)
    write(root / "b" / "c.bin", b"\x00\x01" * 5000)
    return root


@pytest.fixture
def file_point(account, region, general_vault, src):
    return back_up(general_vault(), make_source(account, region, SourceType.ECS_FILE, path=src))


def test_target_in_another_region_is_refused(tmp_path, account, lrs_region, file_point):
    # rule S1: a point of a cn-hangzhou vault restores only to resources of cn-hangzhou
    target = make_target(account, lrs_region, "ecs-instance", tmp_path / "dest")
    assert_refused(file_point, target, lrs_region.name, file_point.vault.region.name)


def test_replication_target_vault_restores_only_in_its_region(tmp_path, account, region, lrs_region, file_point):
    # rule S1: from a Replication Target vault, only resources of its region are offered or accepted
    replica = replicate(file_point.vault, lrs_region)[file_point.id]
    home = make_target(account, region, "ecs-instance", tmp_path / "home", name="in-source-region")
    assert_refused(replica, home, region.name, lrs_region.name)
    here = make_target(account, lrs_region, "ecs-instance", tmp_path / "here", name="in-replica-region")
    (tmp_path / "here").mkdir()
    assert list(services.targets_for(replica)) == [here]
    restore_ok(replica, here)
    assert (tmp_path / "here" / "a.txt").read_bytes() == b"alpha\n" * 100


def test_target_of_another_account_is_refused(other_tmp_path, other_account, region, file_point):
    # rule A1 / S1: a target prepared by another account, even in the same region and of the right kind
    target = make_target(other_account, region, "ecs-instance", other_tmp_path / "dest")
    assert_refused(file_point, target, "another account")
    assert list(services.targets_for(file_point)) == []


def test_every_kind_but_the_matching_one_is_refused(tmp_path, account, region, general_vault):
    # rule S2: for each data source type, only its kind of target is accepted
    vault = general_vault()
    data = tmp_path / "data"
    write(data / "f.bin", b"payload\n" * 64)
    bucket_root = local_bucket_dir(region, "srcbucket")
    write(bucket_root / "k/obj.txt", b"object\n")
    targets = {
        kind: make_target(account, region, kind, "restorebucket" if kind == "oss-bucket" else tmp_path / kind)
        for kind in TargetKind.values
    }
    for source_type in SourceType.values:
        if source_type == SourceType.OSS:
            source = make_source(account, region, source_type, bucket="srcbucket", prefix="k/")
        else:
            source = make_source(account, region, source_type, path=data)
        point = back_up(vault, source)
        wanted = KIND_FOR_SOURCE[source_type]
        for kind, target in targets.items():
            if kind == wanted:
                assert services.restore_refusal(point, target) is None
                continue
            assert_refused(point, target, TargetKind(wanted).label, TargetKind(kind).label)
        assert [t.kind for t in services.targets_for(point)] == [wanted]


def test_vmware_point_from_a_replication_target_vault_is_refused(tmp_path, account, region, lrs_region, general_vault):
    # rule S3: VMware VM points cannot be restored from a Replication Target vault
    image = tmp_path / "vm"
    write(image / "disk0.vmdk", bytes(300_000) + b"boot" * 1000)
    write(image / "vm.vmx", b'displayName = "web"\n')
    vault = general_vault()
    point = back_up(vault, make_source(account, region, SourceType.VMWARE_VM, path=image))
    replica = replicate(vault, lrs_region)[point.id]
    assert replica.source_type == SourceType.VMWARE_VM
    (tmp_path / "there").mkdir()
    target = make_target(account, lrs_region, "local-server", tmp_path / "there")
    assert_refused(replica, target, "VMware VM", "Replication Target")
    # the same point restores from the General Backup vault it came from
    (tmp_path / "home").mkdir()
    restore_ok(point, make_target(account, region, "local-server", tmp_path / "home"))
    assert (tmp_path / "home" / "disk0.vmdk").read_bytes() == bytes(300_000) + b"boot" * 1000


def test_targets_offered_for_a_vmware_replica_are_none(tmp_path, account, region, lrs_region, general_vault):
    # rules S1, S3: a point that cannot be restored from a Replication Target vault is offered no target
    # (targets_for says "the targets a point can be restored to"; every one offered must be accepted)
    image = tmp_path / "vm"
    write(image / "disk0.vmdk", b"disk" * 10000)
    vault = general_vault()
    point = back_up(vault, make_source(account, region, SourceType.VMWARE_VM, path=image))
    replica = replicate(vault, lrs_region)[point.id]
    make_target(account, lrs_region, "local-server", tmp_path / "there")
    offered = list(services.targets_for(replica))
    assert [t for t in offered if services.restore_refusal(replica, t) is not None] == []


def test_the_restore_dialog_says_why_a_vmware_replica_cannot_be_restored(
    alice, tmp_path, account, region, lrs_region, general_vault
):
    # rule S3 in the dialog: the service's reason, not a suggestion to register a target that would be refused
    write(tmp_path / "vm" / "disk0.vmdk", b"disk" * 10000)
    vault = general_vault()
    point = back_up(vault, make_source(account, region, SourceType.VMWARE_VM, path=tmp_path / "vm"))
    replica = replicate(vault, lrs_region)[point.id]
    body = alice.get(
        "/regions/us-west-1/restore-jobs/create/",
        {"vault": replica.vault_id, "point": replica.id},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "cannot be restored from a Replication Target vault" in body and "register one" not in body


def test_archived_point_is_refused_until_brought_back(tmp_path, account, region, file_point, src):
    # archive tier: an archived point is refused with a message saying to bring it back; once brought back
    # it restores
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, region, "ecs-instance", dest)
    vault_services.archive_point(file_point)
    archived = BackupPoint.objects.select_related("vault__region", "vault__account").get(pk=file_point.pk)
    assert archived.tier == Tier.ARCHIVE
    assert_refused(archived, target, "archive", "bring it back")
    assert list(dest.iterdir()) == []

    back = vault_services.bring_back_point(actor=None, point=archived)
    assert back.tier == Tier.STANDARD
    restore_ok(BackupPoint.objects.get(pk=file_point.pk), target)
    assert (dest / "a.txt").read_bytes() == (src / "a.txt").read_bytes()
    assert (dest / "b" / "c.bin").read_bytes() == (src / "b" / "c.bin").read_bytes()


def test_targets_for_lists_only_the_right_region_account_and_kind(
    tmp_path, other_tmp_path, account, other_account, region, lrs_region, file_point
):
    # rules S1, S2: the targets offered for a point
    right = [
        make_target(account, region, "ecs-instance", tmp_path / "r1", name="a-right"),
        make_target(account, region, "ecs-instance", tmp_path / "r2", name="b-right"),
    ]
    make_target(account, lrs_region, "ecs-instance", tmp_path / "w1", name="other-region")
    make_target(other_account, region, "ecs-instance", other_tmp_path / "w2", name="other-account")
    make_target(account, region, "nas", tmp_path / "w3", name="other-kind")
    make_target(account, region, "local-server", tmp_path / "w4", name="on-prem")
    assert list(services.targets_for(file_point)) == right


def test_run_re_checks_the_rules(tmp_path, account, region, lrs_region, file_point):
    # rule S1 on every path: a job whose target moved to another region after it was queued fails when run
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, region, "ecs-instance", dest)
    job = services.start_restore(actor=None, point=file_point, target=target)
    type(target).objects.filter(pk=target.pk).update(region=lrs_region)
    services.run_restore_job(job.pk)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.FAILED and "region" in job.error
    assert list(dest.iterdir()) == []
    assert AuditLog.objects.get(action="run_restore", object_id=str(job.pk)).outcome == AuditLog.Outcome.FAILED


def test_the_service_own_data_is_never_a_source_or_a_target(
    tmp_path, account, region, settings, s3_stores, general_vault
):
    # rules A1, L1: a backup of the stores or keys would hand over every vault; a restore into them
    # could overwrite another account's packs (a locked vault's too)
    from vaults.dataplane.objectstore import store_config

    store_bucket = store_config(region)[1]
    local_areas = [settings.DATA_DIR, settings.MASTER_SECRET_FILE.parent, "/"]
    for path in local_areas:
        with pytest.raises(ValidationError, match="own data"):
            vault_services.create_backup_source(
                actor=None, account=account, region=region, source_type="nas", name="x", path=str(path)
            )
        with pytest.raises(ValidationError, match="own data"):
            make_target(account, region, "local-server", path)
    with pytest.raises(ValidationError, match="own data"):
        vault_services.create_backup_source(
            actor=None, account=account, region=region, source_type="oss", name="x", bucket=store_bucket
        )
    with pytest.raises(ValidationError, match="own data"):
        make_target(account, region, "oss-bucket", store_bucket)
    early = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="nas", name="early", path=str(tmp_path / "data")
    )
    settings.BACKUP_PATH_ROOTS = [str(tmp_path / "exports")]  # each account: exports/<slug>/
    with pytest.raises(ValidationError, match="not under this account's directories"):  # checked at each run too
        vault_services.start_backup(actor=None, vault=general_vault(), source=early)
    for elsewhere in (tmp_path / "elsewhere", tmp_path / "exports" / "globex", tmp_path / "exports"):
        with pytest.raises(ValidationError, match="not under this account's directories"):
            make_target(account, region, "local-server", elsewhere)
    make_target(account, region, "local-server", tmp_path / "exports" / account.slug / "restores")
