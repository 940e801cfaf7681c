"""A backup policy's replication rule (rules C1, C4, C5 on R1-R5, R7): it starts the pair through the Initiate
panel's own checks, is the route for ECS instance data, shares a vault's one target, and turning it off never
stops the pair."""

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from console.models import AuditLog
from replication import engine, services
from replication.models import PolicyReplication, ReplicatedPoint, ReplicationPair
from tests.replication.conftest import create_target
from vaults import services as vault_services
from vaults.models import BackupPoint, Policy, VaultType
from vaults.schedule import parse_duration
from vaults.services import policies

NIGHTLY = policies.policy_schedule(weekdays=range(7), times=((2, 0),))


@pytest.fixture
def policy(source_vault, account, region, source):
    made = policies.create_policy(
        actor=None, account=account, region=region, name="nightly", vault=source_vault, schedule=NIGHTLY
    )
    policies.bind_source(actor=None, policy=made, source=source)
    return made


def run_now(policy):
    run = policies.run_policy(actor=None, policy=policy)
    for job in run.jobs.all():
        vault_services.run_backup_job(job.pk)
    return run


def test_the_rule_starts_the_pair_and_the_policys_points_reach_the_destination(policy, lrs_region):
    rule = services.set_policy_replication(
        actor=None, policy=policy, destination_region=lrs_region, create=create_target("nightly-dr")
    )
    pair = rule.pair
    assert pair.is_active and pair.by_policy == policy.pk and pair.target_vault.region == lrs_region
    assert pair.target_vault.vault_type == VaultType.REPLICATION_TARGET
    run_now(policy)
    engine.sync_pair(pair.id)
    copy = ReplicatedPoint.objects.get(pair=pair, state=ReplicatedPoint.State.COMMITTED)
    source_point = BackupPoint.objects.get(pk=copy.source_point_id)
    assert source_point.by_policy == policy.pk and copy.target_point.vault_id == pair.target_vault_id
    assert services.policy_replication(policy) == {
        "pair": pair.id, "target_vault": pair.target_vault_id, "state": ReplicationPair.State.RUNNING, "enabled": True,
    }  # fmt: skip
    assert AuditLog.objects.filter(action="start_replication", detail__policy="nightly").exists()


@pytest.mark.parametrize(
    "rule,field",
    [
        ({"region": "same"}, "destination_region"),  # R6: another region
        ({"target": "general"}, "target_vault"),  # R2: a Replication Target vault
        ({}, None),  # neither a target nor a new one
    ],
)
def test_every_refusal_reads_as_the_panels_and_changes_nothing(policy, region, lrs_region, make_vault, rule, field):
    destination = region if rule.get("region") == "same" else lrs_region
    kwargs = {"create": create_target()} if rule.get("region") else {}
    if rule.get("target") == "general":
        kwargs = {"target_vault": vault_services.initialize_vault_storage(make_vault("plain", reg=lrs_region).id)}
    with pytest.raises(ValidationError) as error:
        services.set_policy_replication(actor=None, policy=policy, destination_region=destination, **kwargs)
    if field:
        assert field in error.value.message_dict
    assert not ReplicationPair.objects.exists() and not PolicyReplication.objects.exists()
    assert AuditLog.objects.filter(action="set_policy_replication", outcome="refused").exists()


def test_ecs_instance_data_replicates_through_a_policy_only(source_vault, account, region, lrs_region, tmp_path):
    # rules R7, C4: refused by the panel, accepted by a policy's rule; backups of it then go on (C5 too)
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "image").write_bytes(b"a whole machine\n")
    vm = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-instance", name="vm", path=str(tmp_path / "disk")
    )
    policy = policies.create_policy(
        actor=None, account=account, region=region, name="machines", vault=source_vault, schedule=NIGHTLY
    )
    policies.bind_source(actor=None, policy=policy, source=vm)
    run_now(policy)
    with pytest.raises(ValidationError, match="backup policy"):
        services.start_replication(
            actor=None, source_vault=source_vault, destination_region=lrs_region, create=create_target()
        )
    rule = services.set_policy_replication(
        actor=None, policy=policy, destination_region=lrs_region, create=create_target("machines-dr")
    )
    services.disable_policy_replication(actor=None, policy=policy)
    second = run_now(policy)  # an ECS instance backup into the vault the policy replicates
    assert second.skipped == [] and BackupPoint.objects.filter(vault=source_vault).count() == 2
    engine.sync_pair(rule.pair.id)
    assert ReplicatedPoint.objects.filter(pair=rule.pair, state=ReplicatedPoint.State.COMMITTED).count() == 2


def test_two_policies_share_the_vaults_one_target(policy, account, region, lrs_region, make_vault):
    # rule R3
    rule = services.set_policy_replication(
        actor=None, policy=policy, destination_region=lrs_region, create=create_target("shared-dr")
    )
    second = policies.create_policy(
        actor=None, account=account, region=region, name="hourly", vault=policy.vault,
        schedule=policies.policy_schedule(every=parse_duration("6h")),
    )  # fmt: skip
    other = vault_services.initialize_vault_storage(
        make_vault("other-dr", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    with pytest.raises(ValidationError, match="one replication target"):
        services.set_policy_replication(actor=None, policy=second, destination_region=lrs_region, target_vault=other)
    joined = services.set_policy_replication(actor=None, policy=second, destination_region=lrs_region)
    assert joined.pair_id == rule.pair_id and ReplicationPair.objects.count() == 1


def test_turning_the_rule_off_never_stops_the_pair(policy, lrs_region):
    # rule C5
    rule = services.set_policy_replication(
        actor=None, policy=policy, destination_region=lrs_region, create=create_target("kept-dr")
    )
    services.disable_policy_replication(actor=None, policy=policy)
    rule.refresh_from_db()
    assert rule.enabled is False and ReplicationPair.objects.get(pk=rule.pair_id).is_active
    assert services.policy_replication(policy)["enabled"] is False
    assert AuditLog.objects.filter(action="disable_policy_replication", object_id=policy.pk).exists()


def command(*args):
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_the_command_creates_a_policy_with_its_replication_rule_or_nothing(source_vault, account, region, lrs_region):
    base = ["policy", "create", "--account", account.slug, "--region", region.code, "--vault", source_vault.id,
            "--every", "1d"]  # fmt: skip
    with pytest.raises(CommandError, match="destination region must differ"):
        call_command(*base, "--name", "bad", "--replicate-to", region.code, "--replicate-create-name", "x",
                     stdout=StringIO())  # fmt: skip
    assert not Policy.objects.exists() and not ReplicationPair.objects.exists()
    assert AuditLog.objects.filter(action="create_policy", outcome="refused").count() == 1
    made = command(*base, "--name", "dr", "--replicate-to", lrs_region.code, "--replicate-create-name", "dr-target")
    pair = ReplicationPair.objects.get()
    assert made["replication"] == {"pair": pair.id, "target_vault": pair.target_vault_id, "state": pair.state,
                                   "enabled": True}  # fmt: skip
    off = command("policy", "update", made["id"], "--no-replication")
    assert off["replication"]["enabled"] is False and ReplicationPair.objects.get().is_active
