"""Backup policies (rules C1, C2): create, change, pause, bind sources, run now, and the dispatcher that
starts each due run once, however many schedulers or workers run it."""

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from console import jobs
from console.services import audit_refusals, record_audit

from ..models import BackupJob, Policy, PolicyRun, PolicySource, VaultType
from ..schedule import Schedule, ScheduleError
from .backups import MAX_RETENTION_DAYS, source_refusal, start_backup

log = logging.getLogger(__name__)

# A scheduled run that starts later than this after its due time says it was late, and by how much (rule C2).
LATE_AFTER = timedelta(minutes=2)
RULES = ("retention_days", "retain_at_least_one", "keep_weekly", "keep_monthly", "keep_yearly", "archive_after_days")
KEEP_MAX = 1000


def _about(policy):
    """What an audit row about a policy names: the policy, its account and region."""
    return {
        "object_type": "policy",
        "object_id": policy.pk or "",
        "account": policy.account,
        "region_code": policy.region.code,
    }


def _set_schedule(policy, schedule):
    policy.time_zone = schedule.zone
    policy.every, policy.start = schedule.every, schedule.start
    policy.weekdays = list(schedule.weekdays)
    policy.times = [f"{h:02d}:{m:02d}" for h, m in schedule.times]


def _check(policy):
    """Every rule of C1 a policy's fields must meet; a ValidationError naming the fields, else None."""
    errors = {}
    if not policy.name:
        errors["name"] = "Give the policy a name."
    elif Policy.objects.filter(account=policy.account, region=policy.region, name=policy.name).exclude(pk=policy.pk):
        errors["name"] = f"There is already a policy named {policy.name} in {policy.region.name}."
    vault = policy.vault
    if vault.account_id != policy.account_id or vault.region_id != policy.region_id:
        errors["vault"] = f"Choose a vault of this account in {policy.region.name}."
    elif vault.vault_type == VaultType.REPLICATION_TARGET:
        errors["vault"] = "A Replication Target vault is read-only: it cannot be a policy's backup vault (rule R9)."
    try:
        policy.schedule.check()
    except ScheduleError as exc:
        errors["schedule"] = str(exc)
    retention, archive = policy.retention_days, policy.archive_after_days
    if retention is not None and not 1 <= retention <= MAX_RETENTION_DAYS:
        errors["retention_days"] = f"Retention is 1 to {MAX_RETENTION_DAYS} days, or forever."
    if archive is not None and not 1 <= archive <= MAX_RETENTION_DAYS:
        errors["archive_after_days"] = f"Archive after 1 to {MAX_RETENTION_DAYS} days, or never."
    elif archive is not None and retention is not None and retention <= archive:
        errors["retention_days"] = "Retention must be longer than the archive age: points would expire unarchived."
    for field in ("keep_weekly", "keep_monthly", "keep_yearly"):
        if not 0 <= getattr(policy, field) <= KEEP_MAX:
            errors[field] = f"Keep 0 to {KEEP_MAX} periods."
    if errors:
        raise ValidationError(errors)


def create_policy(*, actor, account, region, name, vault, schedule, **rules):
    """Rule C1: a policy backing up into `vault` on `schedule`; `rules` are RULES' fields (retention etc.)."""
    policy = Policy(account=account, region=region, name=(name or "").strip(), vault=vault, **rules)
    _set_schedule(policy, schedule)
    with audit_refusals("create_policy", actor=actor, **_about(policy), name=policy.name):
        with transaction.atomic():
            _check(policy)
            policy.next_run = policy.schedule.next_after(timezone.now())
            policy.save()
            record_audit(
                actor=actor,
                action="create_policy",
                **_about(policy),
                name=policy.name,
                vault=vault.id,
                schedule=policy.schedule.describe(),
                **{rule: getattr(policy, rule) for rule in RULES},
            )
    return policy


def update_policy(*, actor, policy, schedule=None, name=None, vault=None, **rules):
    """Change a policy; its rules apply to points made from now on, and a new schedule starts from now."""
    with audit_refusals("update_policy", actor=actor, **_about(policy), name=policy.name):
        with transaction.atomic():
            policy = Policy.objects.select_for_update().select_related("account", "region", "vault").get(pk=policy.pk)
            if name is not None:
                policy.name = name.strip()
            if vault is not None:
                policy.vault = vault
            for rule, value in rules.items():
                if rule not in RULES:
                    raise ValidationError({rule: "Not a rule of a policy."})
                setattr(policy, rule, value)
            if schedule is not None:
                _set_schedule(policy, schedule)
            _check(policy)
            if schedule is not None and not policy.paused:
                policy.next_run = policy.schedule.next_after(timezone.now())
            policy.save()
            record_audit(
                actor=actor,
                action="update_policy",
                **_about(policy),
                name=policy.name,
                schedule=policy.schedule.describe(),
                **{rule: getattr(policy, rule) for rule in RULES},
            )
    return policy


def pause_policy(*, actor, policy):
    """Rule C2: a paused policy makes no runs."""
    return _set_paused(actor, policy, True)


def resume_policy(*, actor, policy):
    """Runs again from the next due time after now: what was missed while paused is not replayed."""
    return _set_paused(actor, policy, False)


def _set_paused(actor, policy, paused):
    with transaction.atomic():
        policy = Policy.objects.select_for_update().select_related("account", "region").get(pk=policy.pk)
        if policy.paused != paused:
            policy.paused = paused
            policy.next_run = None if paused else policy.schedule.next_after(timezone.now())
            policy.save(update_fields=["paused", "next_run"])
            action = "pause_policy" if paused else "resume_policy"
            record_audit(actor=actor, action=action, **_about(policy), name=policy.name)
    return policy


def delete_policy(*, actor, policy):
    """Its sources are unbound; the points it made keep their retention; its runs' jobs stay in the list."""
    with transaction.atomic():
        record_audit(actor=actor, action="delete_policy", **_about(policy), name=policy.name)
        policy.delete()


def bind_source(*, actor, policy, source):
    """Rule C1: a source of the policy's account and region, that can go into its vault, once per policy."""
    with audit_refusals("bind_source", actor=actor, **_about(policy), name=policy.name, source=source.name):
        if source.account_id != policy.account_id or source.region_id != policy.region_id:
            raise ValidationError({"source": f"Choose a backup source of this account in {policy.region.name}."})
        if reason := source_refusal(policy.vault, source):
            raise ValidationError({"source": reason})
        with transaction.atomic():
            if PolicySource.objects.filter(policy=policy, source=source).exists():
                raise ValidationError({"source": f"{source.name} is bound to {policy.name} already."})
            binding = PolicySource.objects.create(policy=policy, source=source)
            record_audit(actor=actor, action="bind_source", **_about(policy), name=policy.name, source=source.name)
    return binding


def unbind_source(*, actor, policy, source):
    with transaction.atomic():
        if PolicySource.objects.filter(policy=policy, source=source).delete()[0]:
            record_audit(actor=actor, action="unbind_source", **_about(policy), name=policy.name, source=source.name)


def point_rules(policy):
    """What the points of a run keep of their policy (rule C3): later edits of the policy do not change them."""
    return {
        "policy": policy.pk,
        "name": policy.name,
        "time_zone": policy.time_zone,
        **{rule: getattr(policy, rule) for rule in RULES if rule != "retention_days"},
    }


def run_policy(*, actor, policy, trigger=PolicyRun.Trigger.RUN_NOW, scheduled_for=None, late=timedelta(0)):
    """Rule C2: one backup job per bound source; a source whose previous job of this policy is still queued
    or running is skipped, and so is one the backup refuses, each recorded with why."""
    with transaction.atomic():
        run = PolicyRun.objects.create(
            policy=policy,
            trigger=trigger,
            scheduled_for=scheduled_for,
            late_seconds=int(late.total_seconds()),
            rules=point_rules(policy),
        )
        skipped, started = [], []
        for binding in policy.bindings.select_related("source__account", "source__region").order_by("source__name"):
            source = binding.source
            previous = jobs.active(BackupJob.objects.filter(policy_run__policy=policy, source=source)).first()
            if previous is not None:
                reason = f"the previous run's backup (job {previous.pk}) is still {previous.status}"
                skipped.append({"source": source.pk, "name": source.name, "reason": reason})
                continue
            try:
                job = start_backup(
                    actor=actor,
                    vault=policy.vault,
                    source=source,
                    retention_days=policy.retention_days,
                    policy_run=run,
                )
            except ValidationError as exc:
                skipped.append({"source": source.pk, "name": source.name, "reason": " ".join(exc.messages)})
                continue
            started.append(job.pk)
        run.skipped = skipped
        run.save(update_fields=["skipped"])
        record_audit(
            actor=actor,
            action="run_policy",
            **_about(policy),
            name=policy.name,
            trigger=trigger,
            late_seconds=run.late_seconds,
            jobs=started,
            skipped=skipped,
        )
    return run


def dispatch_due_policies():
    """Rule C2, the periodic task's work: each due policy runs once, then its next run moves past now.

    One policy per transaction, claimed with its row lock (SKIP LOCKED on PostgreSQL), so two dispatchers at
    once never run one due time twice; due times missed while nothing ran are made up by this one run, late.
    """
    runs = []
    while True:
        with transaction.atomic():
            now = timezone.now()
            due = Policy.objects.select_for_update(skip_locked=True).select_related("account", "region", "vault")
            policy = due.filter(paused=False, next_run__lte=now).order_by("next_run").first()
            if policy is None:
                return runs
            late = now - policy.next_run
            runs.append(
                run_policy(
                    actor=None,
                    policy=policy,
                    trigger=PolicyRun.Trigger.SCHEDULED,
                    scheduled_for=policy.next_run,
                    late=late if late > LATE_AFTER else timedelta(0),
                )
            )
            policy.next_run = policy.schedule.next_after(now)
            policy.save(update_fields=["next_run"])


def policy_schedule(*, every=None, start=None, weekdays=(), times=(), zone="UTC"):
    """A Schedule from a form's or a command's parts (start defaults to now)."""
    if every is not None and start is None:
        start = timezone.now().replace(second=0, microsecond=0)
    return Schedule(zone=zone, every=every, start=start, weekdays=tuple(weekdays), times=tuple(times))
