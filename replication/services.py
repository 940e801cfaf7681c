"""Replication actions: start (select or create the target), stop, and the checks of rules R1-R13.

Every state change of a pair goes through `set_pair_state` under the pair's row
lock, so a stop and a copy's commit cannot interleave (rule R12); its error
condition is set by `note_pair_error` and cleared by `clear_pair_error`.
"""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from console import jobs as console_jobs
from console.models import Region
from console.services import audit_refusals, record_audit, record_refusal
from vaults import services as vault_services
from vaults.dataplane.keys import vault_keys
from vaults.models import BackupJob, BackupPoint, EncryptionMethod, SourceType, Vault, VaultStatus, VaultType
from vaults.services import policies

from .lease import held_elsewhere
from .models import PolicyReplication, ReplicationPair

log = logging.getLogger(__name__)


NOT_REPLICABLE = {
    VaultType.OSS_TRIAL: "Free-trial vaults cannot be replicated.",
    VaultType.NAS_TRIAL: "Free-trial vaults cannot be replicated.",
    VaultType.TABLESTORE_TRIAL: "Free-trial vaults cannot be replicated.",
    VaultType.REPLICATION_TARGET: "A Replication Target vault cannot be replicated.",
    VaultType.ARCHIVE: "Archive vaults cannot be replicated.",
    VaultType.DATABASE: "Database Backup vaults cannot be replicated.",
    VaultType.CONTAINER: "Container Backup vaults cannot be replicated.",
}


def active_pair_of(vault):
    """The running pair this vault is the source or the target of, or None."""
    return (
        ReplicationPair.objects.active().filter(source_vault=vault).first()
        or ReplicationPair.objects.active().filter(target_vault=vault).first()
    )


def replication_refusal(vault, *, replicated=None, has_ecs_instance_data=None, by_policy=False):
    """Rules R1, R3, R7: why this vault cannot be configured for replication, or None.

    A page of many vaults passes what it already knows, so the check costs no query per row. A policy's
    replication rule (`by_policy`) is the route for ECS instance data (rule C4).
    """
    if vault.vault_type in NOT_REPLICABLE:
        return NOT_REPLICABLE[vault.vault_type]
    if vault.status == VaultStatus.ERROR:
        return "A vault in Error state cannot be replicated."
    if vault.status != VaultStatus.NORMAL:
        return f"The vault is {vault.get_status_display()}; it can be replicated once it is Normal."
    if reason := vault.region.new_work_refusal:
        return reason
    if not vault.region.supports_cross_region:
        return f"{vault.region.name} does not support cross-region backup."
    if replicated is None:
        replicated = ReplicationPair.objects.active().filter(source_vault=vault).exists()
    if replicated:
        return "This vault is already replicated: a vault has at most one replication target."
    if by_policy:
        return None
    if has_ecs_instance_data is None:
        has_ecs_instance_data = bool(vaults_with_ecs_instance_data([vault.id]))
    if has_ecs_instance_data:
        return "This vault holds (or is backing up) ECS instance data: enable its replication with a backup policy."
    return None


def vaults_with_ecs_instance_data(vault_ids):
    """Of these vaults, those holding ECS instance points or about to (a backup job queued or running): R7."""
    points = BackupPoint.objects.filter(vault__in=vault_ids, source_type=SourceType.ECS_INSTANCE)
    jobs = console_jobs.active(
        BackupJob.objects.filter(vault__in=vault_ids, source__source_type=SourceType.ECS_INSTANCE)
    )
    return set(points.values_list("vault", flat=True)) | set(jobs.values_list("vault", flat=True))


def destination_regions(source_vault):
    """Rule R6: every enabled region but the source's that supports cross-region backup."""
    return Region.objects.filter(is_enabled=True, supports_cross_region=True).exclude(pk=source_vault.region_id)


def free_target_vaults(account, region, encryption_method=None):
    """Replication Target vaults of the account in a region that no pair ever used, without backup lock.

    A stopped pair's target is standalone for good (rule R12), and a locked vault's points
    could not follow a source's deletions (rule L1).
    """
    used = ReplicationPair.objects.values("target_vault")
    rows = Vault.objects.filter(
        account=account,
        region=region,
        vault_type=VaultType.REPLICATION_TARGET,
        status=VaultStatus.NORMAL,
        backup_lock=False,
    ).exclude(pk__in=used)
    if encryption_method:
        rows = rows.filter(encryption_method=encryption_method)
    return rows


def start_replication(*, actor, source_vault, destination_region, target_vault=None, create=None, policy=None):
    """Rules R1-R5: pair the source with a chosen free target, or a new one, and start the historical sync.

    `create` holds the new target's fields: name, description, resource_group,
    encryption_method, kms_key. `policy`: the backup policy whose replication rule starts it (rule C4).
    """
    account = source_vault.account
    with audit_refusals(
        "start_replication",
        actor=actor,
        account=account,
        region_code=source_vault.region.code,
        object_type="vault",
        object_id=source_vault.id,
    ):
        if (target_vault is None) == (create is None):
            raise ValidationError("Select a Replication Target Vault or create one.")
        with transaction.atomic():
            source = Vault.objects.select_for_update().select_related("region", "account").get(pk=source_vault.pk)
            reason = replication_refusal(source, by_policy=policy is not None)
            if reason:
                raise ValidationError(reason)
            _check_destination(source, destination_region)
            if target_vault is not None:
                target = _check_selected_target(source, destination_region, target_vault)
            else:
                target = _create_target(actor, source, destination_region, create)
            pair = ReplicationPair.objects.create(
                account=account,
                source_vault=source,
                target_vault=target,
                source_label=f"{source.name} ({source.region.code})",
                target_label=f"{target.name} ({destination_region.code})",
                by_policy=policy.pk if policy is not None else "",
            )
            record_audit(
                actor=actor,
                action="start_replication",
                object_type="replication_pair",
                object_id=pair.id,
                account=account,
                region_code=source.region.code,
                source=source.id,
                target=target.id,
                destination=destination_region.code,
                **({"policy": policy.name} if policy is not None else {}),
            )
            transaction.on_commit(lambda: enqueue_sync(pair.id))
    return pair


def set_policy_replication(*, actor, policy, destination_region, target_vault=None, create=None):
    """A backup policy's replication rule (rules C1, C4): its vault replicated to `destination_region`, through
    the Initiate panel's own checks (R1-R5), so every refusal reads the same. A vault has one target (R3): where
    it is replicated already, the rule joins that pair if it names that target (or none), else it is refused."""
    vault = policy.vault
    with audit_refusals(
        "set_policy_replication",
        actor=actor,
        account=policy.account,
        region_code=policy.region.code,
        object_type="policy",
        object_id=policy.pk,
        name=policy.name,
    ):
        with transaction.atomic():
            pair = ReplicationPair.objects.active().filter(source_vault=vault).select_related("target_vault").first()
            if pair is not None:
                named = target_vault is None or target_vault.pk == pair.target_vault_id
                if create is not None or not named or pair.target_vault.region_id != destination_region.pk:
                    raise ValidationError(
                        {
                            "target_vault": f"{vault.name} is replicated to {pair.target_label} already: a vault has "
                            "one replication target, so a policy backing up into it must name that one."
                        }
                    )
            else:
                pair = start_replication(
                    actor=actor,
                    source_vault=vault,
                    destination_region=destination_region,
                    target_vault=target_vault,
                    create=create,
                    policy=policy,
                )
            rule, _ = PolicyReplication.objects.update_or_create(
                policy=policy, defaults={"pair": pair, "enabled": True}
            )
            record_audit(
                actor=actor,
                action="set_policy_replication",
                object_type="policy",
                object_id=policy.pk,
                account=policy.account,
                region_code=policy.region.code,
                name=policy.name,
                pair=pair.id,
                target=pair.target_vault_id,
            )
    return rule


def save_policy(*, actor, action, account, region, save, sources=(), replication=None, replication_off=False):
    """A policy saved (`save()`: vaults' create_policy or update_policy), its new sources bound and its
    replication rule set or turned off, together or not at all: a refusal of any part changes nothing and is
    audited once, as the refusal of `action`. The Policy Center's dialog and `manage.py policy` use it."""
    try:
        with transaction.atomic():
            policy = save()
            for source in sources:
                policies.bind_source(actor=actor, policy=policy, source=source)
            if replication is not None:
                set_policy_replication(actor=actor, policy=policy, **replication)
            elif replication_off:
                disable_policy_replication(actor=actor, policy=policy)
    except ValidationError as exc:
        record_refusal(
            actor=actor, action=action, error=exc, account=account, region_code=region.code, object_type="policy"
        )
        raise
    return policy


def disable_policy_replication(*, actor, policy):
    """Rule C5: the rule is off, and the pair goes on: stopping it is Stop backup vault replication (R12)."""
    with transaction.atomic():
        rule = PolicyReplication.objects.select_for_update().filter(policy=policy, enabled=True).first()
        if rule is None:
            return None
        rule.enabled = False
        rule.save(update_fields=["enabled"])
        record_audit(
            actor=actor,
            action="disable_policy_replication",
            object_type="policy",
            object_id=policy.pk,
            account=policy.account,
            region_code=policy.region.code,
            name=policy.name,
            pair=rule.pair_id,
        )
    return rule


def policy_replication(policy):
    """What the policy's replication rule shows: None, or its pair's target and state, and whether it is on."""
    rule = PolicyReplication.objects.filter(policy=policy).select_related("pair").first()
    if rule is None or rule.pair is None:
        return None
    return {
        "pair": rule.pair_id,
        "target_vault": rule.pair.target_vault_id,
        "state": rule.pair.state,
        "enabled": rule.enabled,
    }


def _check_destination(source, region):
    if region is None:
        raise ValidationError({"destination_region": "Choose a destination region."})
    if region.pk == source.region_id:
        raise ValidationError({"destination_region": "The destination region must differ from the source's region."})
    if reason := region.new_work_refusal:
        raise ValidationError({"destination_region": reason})
    if not region.supports_cross_region:
        raise ValidationError({"destination_region": f"{region.name} does not support cross-region backup."})


def _check_selected_target(source, region, target_vault):
    """Rules R2, R3, R5 for an existing vault."""
    target = Vault.objects.select_for_update(of=("self",)).select_related("region", "kms_key").get(pk=target_vault.pk)
    if target.account_id != source.account_id:
        raise ValidationError({"target_vault": "Choose a vault of this account."})
    if target.vault_type != VaultType.REPLICATION_TARGET:
        raise ValidationError({"target_vault": "The target must be a Replication Target vault."})
    if target.region_id != region.pk:
        raise ValidationError({"target_vault": f"The target vault is not in {region.name}."})
    if target.status != VaultStatus.NORMAL:
        raise ValidationError({"target_vault": f"The target vault is {target.get_status_display()}."})
    if ReplicationPair.objects.active().filter(target_vault=target).exists():
        raise ValidationError({"target_vault": "This vault is already the target of another replication."})
    if ReplicationPair.objects.filter(target_vault=target).exists():
        raise ValidationError(
            {"target_vault": "This vault is standalone: its replication was stopped and cannot be resumed (rule R12)."}
        )
    if target.backup_lock:
        raise ValidationError(
            {"target_vault": "This vault has a backup lock: a target's points must follow its source (rule L1)."}
        )
    if target.encryption_method != source.encryption_method:
        raise ValidationError({"target_vault": "The target's encryption method must match the source's (rule R5)."})
    vault_services.adopt_chunk_id_key(target, vault_keys(source).chunk_id_key)
    return target


def _create_target(actor, source, region, create):
    """Rules R4, R5: a new Replication Target vault in the destination region, keyed like the source."""
    encryption = create.get("encryption_method") or source.encryption_method
    if encryption != source.encryption_method:
        raise ValidationError(
            {
                "encryption_method": "The encryption method must match the source vault's "
                f"({source.get_encryption_method_display()})."
            }
        )
    if encryption == EncryptionMethod.KMS and create.get("kms_key") is None:
        raise ValidationError({"kms_key": f"Choose a KMS KeyId of {region.name}."})
    return vault_services.create_vault(  # rule R4 is checked there, on every path that creates a vault
        actor=actor,
        account=source.account,
        region=region,
        name=create.get("name"),
        description=create.get("description", ""),
        resource_group=create.get("resource_group"),
        vault_type=VaultType.REPLICATION_TARGET,
        encryption_method=encryption,
        kms_key=create.get("kms_key"),
        chunk_id_key=vault_keys(source).chunk_id_key,
    )


# -- the pair's state: changed in one place ---------------------------------------------------------

State = ReplicationPair.State
# Allowed transitions: the history is planned, then copied; a stop is for good (rule R12).
TRANSITIONS = {
    State.INITIALIZING: {State.SYNCING, State.STOPPED},
    State.SYNCING: {State.RUNNING, State.STOPPED},
    State.RUNNING: {State.STOPPED},
    State.STOPPED: set(),
}
# The audit row a transition writes (planning the history writes none: start_replication has).
TRANSITION_AUDIT = {State.RUNNING: "finish_historical_sync", State.STOPPED: "stop_replication"}
ALREADY_STOPPED = "This replication is already stopped; a stopped replication cannot resume."


def set_pair_state(locked, to, *, actor=None, region_code=None, detail=None, **fields):
    """Move a pair (row-locked by the caller) to `to` with `fields`, if the transition is allowed; audited
    (in `region_code`, by default the source's)."""
    if to not in TRANSITIONS[locked.state]:
        if locked.state == State.STOPPED:
            raise ValidationError(ALREADY_STOPPED)
        raise ValidationError(f"A replication cannot go from {locked.get_state_display()} to {to.label}.")
    locked.state = to
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=["state", *fields])
    if to in TRANSITION_AUDIT:
        record_audit(
            actor=actor,
            action=TRANSITION_AUDIT[to],
            object_type="replication_pair",
            object_id=locked.id,
            account=locked.account,
            region_code=region_code or pair_region_code(locked),
            **(detail or {}),
        )
    return locked


def pair_region_code(pair):
    """Where a pair's actions are audited: its source's region (its target's once the source is deleted)."""
    vault = pair.source_vault or pair.target_vault
    return vault.region.code if vault is not None else ""


def note_pair_error(pair_id, reason):
    """Why copying fails now, shown on the pair (never silent); the first of a run is audited.

    Returns the delay before the next attempt, or None when the pair no longer runs.
    """
    pair = ReplicationPair.objects.select_related("source_vault__region", "account").filter(pk=pair_id).first()
    if pair is None or not pair.is_active:
        return None
    reason = reason[:2000]
    first = not pair.error
    ReplicationPair.objects.filter(pk=pair_id).update(
        error=reason, error_since=pair.error_since or timezone.now(), attempts=F("attempts") + 1
    )
    if first:
        record_audit(
            actor=None,
            action="replication_error",
            object_type="replication_pair",
            object_id=pair_id,
            account=pair.account,
            region_code=pair_region_code(pair),
            outcome="failed",
            reason=reason,
        )
    log.warning("Replication %s failed (attempt %s): %s", pair_id, pair.attempts + 1, reason)
    return min(300, 5 * 2 ** min(pair.attempts, 6))


def clear_pair_error(locked):
    """A sync round went through: the pair's error condition ends."""
    if locked.error or locked.retry_at:
        locked.error, locked.error_since, locked.attempts, locked.retry_at = "", None, 0, None
        locked.save(update_fields=["error", "error_since", "attempts", "retry_at"])


def claim_retry(pair_id, delay):
    """Whether this failed attempt schedules the pair's retry: one at a time per pair, so attempts started
    by the reconcile or by a new point while a retry waits do not each start a chain of their own."""
    now = timezone.now()
    pending = Q(retry_at__isnull=False, retry_at__gt=now)
    return bool(
        ReplicationPair.objects.filter(pk=pair_id).exclude(pending).update(retry_at=now + timedelta(seconds=delay))
    )


def retry_pending(pair):
    """A retry of the pair's sync is scheduled: the reconcile leaves it to that retry."""
    return pair.retry_at is not None and pair.retry_at > timezone.now()


def pair_to_stop(vault):
    """The pair a stop of `vault` means: its outgoing running pair (else its latest, which is stopped already).

    A Replication Target vault is stopped from its source's region (rule R12): refused with where.
    """
    pair = ReplicationPair.objects.active().filter(source_vault=vault).first()
    if pair is not None:
        return pair
    incoming = ReplicationPair.objects.active().filter(target_vault=vault).select_related("source_vault__region")
    if (incoming := incoming.first()) is not None:
        raise ValidationError(
            f"{vault.name} is the target of {incoming.id}: stop it with the source vault "
            f"{incoming.source_vault_id} ({incoming.source_vault.region.code})."
        )
    pair = ReplicationPair.objects.filter(source_vault=vault).order_by("-created").first()
    if pair is None:
        raise ValidationError(f"{vault.name} is not replicated: there is nothing to stop.")
    return pair


def stop_replication(*, actor, pair, confirmation=None):
    """Rule R12: the pair stops for good; nothing new reaches the target, which becomes standalone."""
    source = pair.source_vault
    with audit_refusals(
        "stop_replication",
        actor=actor,
        account=pair.account,
        region_code=pair_region_code(pair),
        object_type="replication_pair",
        object_id=pair.id,
    ):
        if source is None or not pair.is_active:  # a source is deleted only once its pair stopped (rule R13)
            raise ValidationError(ALREADY_STOPPED)
        if confirmation is not None and confirmation.strip() != source.name:
            raise ValidationError({"confirmation": f"Type the source vault's name, {source.name}, to confirm."})
        with transaction.atomic():
            locked = ReplicationPair.objects.select_for_update().get(pk=pair.pk)
            detail = {"source": source.id, "target": locked.target_vault_id}
            return set_pair_state(
                locked, State.STOPPED, actor=actor, detail=detail, stopped=timezone.now(), history_bytes_in_flight=0
            )


def queue_for(region_code):
    return settings.REPLICATION_QUEUE_TEMPLATE.format(region=region_code)


def enqueue_sync(pair_id):
    """Run the pair's sync on the queue of its destination region."""
    pair = ReplicationPair.objects.select_related("target_vault__region").filter(pk=pair_id).first()
    if pair is None or not pair.is_active:
        return
    try:
        # by the task's name: the tasks module imports the services, not the other way round
        current_app.send_task(
            "replication.tasks.sync_pair_task", args=(pair_id,), queue=queue_for(pair.target_vault.region.code)
        )
    except Exception as exc:  # the broker is down: the periodic reconcile picks it up later
        log.warning("Cannot enqueue the sync of %s: %s", pair_id, exc)
        note_pair_error(pair_id, f"The task queue could not be reached: {exc}")


# -- guards other apps' rules call -----------------------------------------------------------------


def vault_delete_guard(vault):
    """Rules R13, V7: a vault in a running pair cannot be deleted."""
    pair = active_pair_of(vault)
    if pair is None:
        return None
    if pair.source_vault_id == vault.id:
        return "This vault is replicated: stop its replication first (Stop backup vault replication)."
    return "This vault is the target of a running replication: stop the replication in the source's region first."


def point_edit_guard(vault):
    """Rule R9: the points of a target whose pair runs cannot be deleted or changed by hand."""
    if ReplicationPair.objects.active().filter(target_vault=vault).exists():
        return "This point is in a replication target vault: it follows its source and cannot be changed by hand."
    return None


def backup_guard(vault, source):
    """Rule R7: ECS instance data is replicated only through a backup policy, not by a replicated vault (a
    pair a policy started replicates it, rule C4, even once the rule is off: C5)."""
    pair = active_pair_of(vault) if source.source_type == SourceType.ECS_INSTANCE else None
    if pair is not None and not pair.by_policy:
        return (
            "This vault is replicated from Vault Management: ECS instance data is replicated only through a "
            "backup policy. Back it up into a vault that is not replicated."
        )
    return None


def expiry_hold(point):
    """Rule R9: while the pair runs, a target's copy goes when its source point goes, not on its own."""
    return ReplicationPair.objects.active().filter(target_vault=point.vault_id).exists()


def lock_guard(vault):
    """Rule L1: a replication target gets a backup lock only once it is standalone."""
    if ReplicationPair.objects.active().filter(target_vault=vault).exists():
        return "A replication target vault can get a backup lock once its replication is stopped."
    return None


def lifecycle_guard(vault):
    """A replication target follows its source's lifecycle; once its pair is stopped it is standalone and
    managed on its own (rule R12), automatic archiving included."""
    if vault.vault_type != VaultType.REPLICATION_TARGET:
        return None
    if ReplicationPair.objects.filter(target_vault=vault, state=ReplicationPair.State.STOPPED).exists():
        return None
    return "A replication target vault follows its source's lifecycle until its replication is stopped."


def gc_guard(vault):
    """A target's garbage waits while another worker copies into it: its new chunks are not referenced yet."""
    pairs = ReplicationPair.objects.active().filter(target_vault=vault)
    return any(held_elsewhere(pair) for pair in pairs)
