"""`manage.py policy create|update|list|show|bind|unbind|run|pause|resume|delete`: backup policies for scripts
(rules C1, C2), through the same services as the console."""

import time
from datetime import datetime

from django.core.management.base import CommandError
from django.utils import timezone

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from replication.services import policy_replication, save_policy
from vaults.management.lookups import group_and_key
from vaults.models import BackupJob, BackupSource, Policy, Vault
from vaults.schedule import ScheduleError, parse_duration, parse_times, parse_weekdays, zone_of
from vaults.services import policies, run_backup_job


def policy_json(policy):
    last = policy.runs.first()
    return {
        "id": policy.pk,
        "name": policy.name,
        "account": policy.account.slug,
        "region": policy.region.code,
        "vault": policy.vault_id,
        "schedule": policy.schedule.describe(),
        "time_zone": policy.time_zone,
        "paused": policy.paused,
        "next_run": policy.next_run.isoformat() if policy.next_run else None,
        "next_runs": [] if policy.paused else [t.isoformat() for t in policy.schedule.next_runs(timezone.now())],
        **{rule: getattr(policy, rule) for rule in policies.RULES},
        "sources": list(policy.bindings.order_by("source_id").values_list("source_id", flat=True)),
        "replication": policy_replication(policy),
        "last_run": run_json(last) if last else None,
    }


def run_json(run):
    return {
        "id": run.pk,
        "trigger": run.trigger,
        "started": run.started.isoformat(),
        "scheduled_for": run.scheduled_for.isoformat() if run.scheduled_for else None,
        "late_seconds": run.late_seconds,
        "skipped": run.skipped,
        "jobs": [
            {"source": job.source_id, "job": job.pk, "status": job.status, "point": job.point_id}
            for job in run.jobs.order_by("pk")
        ],
    }


def _policy(policy_id):
    return lookup(Policy.objects.select_related("account", "region", "vault"), "policy", pk=policy_id)


class Command(ServiceCommand):
    help = "Create, change, run and remove backup policies."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        create = self.subcommand("create", "create a policy")
        create.add_argument("--account", required=True)
        create.add_argument("--region", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--vault", required=True, help="the vault it backs up into")
        self.rule_arguments(create)
        update = self.subcommand("update", "change a policy (its rules apply to points made from now on)")
        update.add_argument("policy_id")
        update.add_argument("--name", default=None)
        self.rule_arguments(update)
        listing = self.subcommand("list", "list an account's policies")
        listing.add_argument("--account", required=True)
        listing.add_argument("--region", default=None)
        for name, text in (("show", "show one policy"), ("pause", "make no runs"), ("resume", "run again")):
            self.subcommand(name, text).add_argument("policy_id")
        delete = self.subcommand("delete", "delete a policy (its points stay, with their retention)")
        delete.add_argument("policy_id")
        for name, text in (("bind", "back up a source by this policy"), ("unbind", "stop backing up a source")):
            sub = self.subcommand(name, text)
            sub.add_argument("policy_id")
            sub.add_argument("--source", required=True, type=int)
        run = self.subcommand("run", "run now, as the schedule would")
        run.add_argument("policy_id")
        run.add_argument("--wait", action="store_true", help="run the backups in this process and wait for them")

    def rule_arguments(self, sub):
        sub.add_argument("--every", default=None, help="10m, 6h, 1d, 7d ...")
        sub.add_argument("--start", default=None, help="ISO date and time the interval counts from (default: now)")
        sub.add_argument("--weekdays", default=None, help="mon,thu ... (with --at)")
        sub.add_argument("--at", default=None, help="02:00[,14:00] (with --weekdays)")
        sub.add_argument("--timezone", default=None, help="the schedule's time zone (default: the account's)")
        retention = sub.add_mutually_exclusive_group()
        retention.add_argument("--retention-days", type=int, default=None)
        retention.add_argument("--keep-forever", action="store_true")
        sub.add_argument("--retain-at-least-one", action="store_true", default=None)
        for period in ("weekly", "monthly", "yearly"):
            sub.add_argument(f"--keep-{period}", type=int, default=None)
        sub.add_argument("--archive-after-days", type=int, default=None)
        replicate = sub.add_argument_group("replication rule (a copy of every point in another region)")
        replicate.add_argument("--replicate-to", default=None, metavar="REGION", help="the destination region")
        target = replicate.add_mutually_exclusive_group()
        target.add_argument("--replicate-target", default=None, metavar="VAULT_ID", help="a free target vault there")
        target.add_argument("--replicate-create-name", default=None, metavar="NAME", help="or a new target vault")
        replicate.add_argument("--kms-key", default=None, help="the new target's KMS KeyId (a KMS-encrypted vault)")
        if sub.prog.endswith("update"):
            replicate.add_argument(
                "--no-replication", action="store_true", help="turn the rule off (the pair runs until stopped)"
            )

    def schedule_of(self, options, account, policy=None):
        given = any(options[k] is not None for k in ("every", "start", "weekdays", "at", "timezone"))
        if policy is not None and not given:
            return None
        zone = options["timezone"] or (policy.time_zone if policy else account.time_zone)
        try:
            if options["every"]:
                start = datetime.fromisoformat(options["start"]) if options["start"] else None
                if start is not None and start.tzinfo is None:
                    start = start.replace(tzinfo=zone_of(zone))
                return policies.policy_schedule(every=parse_duration(options["every"]), start=start, zone=zone)
            if options["weekdays"] or options["at"]:
                weekdays, times = parse_weekdays(options["weekdays"]), parse_times(options["at"])
                return policies.policy_schedule(weekdays=weekdays, times=times, zone=zone)
            if policy is not None:  # only the zone changes
                return policies.policy_schedule(
                    every=policy.every, start=policy.start, weekdays=policy.weekdays,
                    times=policy.schedule.times, zone=zone,
                )  # fmt: skip
        except (ScheduleError, ValueError) as exc:
            raise CommandError(f"schedule: {exc}") from exc
        raise CommandError("schedule: give --every DURATION [--start ISO] or --weekdays DAYS --at TIMES.")

    @staticmethod
    def rules_of(options):
        rules = {}
        if options["keep_forever"]:
            rules["retention_days"] = None
        elif options["retention_days"] is not None:
            rules["retention_days"] = options["retention_days"]
        if options["retain_at_least_one"]:
            rules["retain_at_least_one"] = True
        for rule in ("keep_weekly", "keep_monthly", "keep_yearly", "archive_after_days"):
            if options[rule] is not None:
                rules[rule] = options[rule]
        return rules

    def replication_of(self, options, account):
        """The replication rule's arguments for set_policy_replication, or None when none is given."""
        if not options["replicate_to"]:
            if options["replicate_target"] or options["replicate_create_name"] or options["kms_key"]:
                raise CommandError("--replicate-target, --replicate-create-name and --kms-key go with --replicate-to.")
            return None
        rule = {"destination_region": lookup(Region.objects, "region", code=options["replicate_to"])}
        if options["replicate_target"]:
            rule["target_vault"] = lookup(Vault.objects, "vault", pk=options["replicate_target"])
        elif options["replicate_create_name"]:
            _, key = group_and_key(account, None, options["kms_key"])
            rule["create"] = {"name": options["replicate_create_name"], "kms_key": key}  # encrypted as the source
        return rule

    def save_with_rule(self, action, account, region, save, options):
        """The policy and its replication rule land together, or neither does (replication.services.save_policy)."""
        return save_policy(
            actor=None,
            action=action,
            account=account,
            region=region,
            save=save,
            replication=self.replication_of(options, account),
            replication_off=bool(options.get("no_replication")),
        )

    def handle_create(self, *, account, region, name, vault, **options):
        account = lookup(Account.objects, "account", slug=account)
        region = lookup(Region.objects, "region", code=region)
        vault = lookup(Vault.objects.select_related("region"), "vault", pk=vault)
        schedule = self.schedule_of(options, account)
        policy = self.save_with_rule(
            "create_policy",
            account,
            region,
            lambda: policies.create_policy(
                actor=None,
                account=account,
                region=region,
                name=name,
                vault=vault,
                schedule=schedule,
                **self.rules_of(options),
            ),  # fmt: skip
            options,
        )
        return policy_json(policy), f"{policy.pk} {policy.name}: {policy.schedule.describe()}"

    def handle_update(self, *, policy_id, name, **options):
        policy = _policy(policy_id)
        schedule = self.schedule_of(options, policy.account, policy)
        policy = self.save_with_rule(
            "update_policy",
            policy.account,
            policy.region,
            lambda: policies.update_policy(
                actor=None, policy=policy, name=name, schedule=schedule, **self.rules_of(options)
            ),
            options,
        )
        return policy_json(policy), f"{policy.pk} {policy.name}: {policy.schedule.describe()}"

    def handle_list(self, *, account, region, **_):
        account = lookup(Account.objects, "account", slug=account)
        found = Policy.objects.filter(account=account).select_related("account", "region", "vault")
        if region:
            found = found.filter(region=lookup(Region.objects, "region", code=region))
        listed = [policy_json(p) for p in found]
        lines = [f"{p['id']}  {p['region']:16} {p['name']}: {p['schedule']}" for p in listed]
        return {"policies": listed}, "\n".join(lines) or "No policies."

    def handle_show(self, *, policy_id, **_):
        data = policy_json(_policy(policy_id))
        return data, "\n".join(f"{k}: {v}" for k, v in data.items())

    def handle_pause(self, *, policy_id, **_):
        policy = policies.pause_policy(actor=None, policy=_policy(policy_id))
        return policy_json(policy), f"{policy.pk} paused."

    def handle_resume(self, *, policy_id, **_):
        policy = policies.resume_policy(actor=None, policy=_policy(policy_id))
        return policy_json(policy), f"{policy.pk} resumed: next run {policy.next_run:%Y-%m-%d %H:%M %Z}."

    def handle_delete(self, *, policy_id, **_):
        policies.delete_policy(actor=None, policy=_policy(policy_id))
        return {"id": policy_id, "deleted": True}, f"Deleted {policy_id}; its points stay, with their retention."

    def handle_bind(self, *, policy_id, source, **_):
        policy = _policy(policy_id)
        source = lookup(BackupSource.objects.select_related("account", "region"), "backup source", pk=source)
        policies.bind_source(actor=None, policy=policy, source=source)
        return policy_json(policy), f"{source.name} is backed up by {policy.name}."

    def handle_unbind(self, *, policy_id, source, **_):
        policy = _policy(policy_id)
        source = lookup(BackupSource.objects, "backup source", pk=source)
        policies.unbind_source(actor=None, policy=policy, source=source)
        return policy_json(policy), f"{source.name} is no longer backed up by {policy.name}."

    def handle_run(self, *, policy_id, wait, **_):
        run = policies.run_policy(actor=None, policy=_policy(policy_id))
        job_ids = list(run.jobs.order_by("pk").values_list("pk", flat=True))
        result = {"run": run.pk, "job": job_ids, "skipped": run.skipped}
        if wait:
            for job_id in job_ids:
                run_backup_job(job_id)  # the queued task finds it finished and does nothing
            jobs = list(BackupJob.objects.filter(pk__in=job_ids))
            while any(job.is_active for job in jobs):
                time.sleep(0.5)
                jobs = list(BackupJob.objects.filter(pk__in=job_ids))
            failed = [job for job in jobs if job.status == BackupJob.Status.FAILED]
            result["status"] = BackupJob.Status.FAILED if failed else BackupJob.Status.SUCCEEDED
            result["points"] = [job.point_id for job in sorted(jobs, key=lambda j: j.pk) if job.point_id]
            if failed:
                self.stdout.write("\n".join(f"job {job.pk}: {job.error}" for job in failed))
        return result, f"Run {run.pk}: jobs {', '.join(map(str, job_ids)) or 'none'}" + (
            f"; skipped {', '.join(s['name'] for s in run.skipped)}" if run.skipped else ""
        )
