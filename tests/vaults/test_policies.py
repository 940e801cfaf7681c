"""Backup policies (rules C1, C2): what a policy accepts, its runs (one job per bound source, overlaps
skipped), the dispatcher (a due run once, missed runs made up by one late run, paused policies quiet), and the
`policy` and `source` commands. Time is driven by setting a policy's next run in the past, never by sleeping."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from console.models import AuditLog
from tests.conftest import ROOT
from tests.vaults.conftest import make_source, write
from vaults.models import BackupJob, BackupPoint, Policy, PolicyRun, VaultType
from vaults.schedule import parse_duration
from vaults.services import lifecycle as policies_lifecycle
from vaults.services import policies, run_backup_job

NIGHTLY = policies.policy_schedule(weekdays=range(7), times=((2, 0),), zone="Asia/Shanghai")


@pytest.fixture
def sources(tmp_path, account, region):
    made = []
    for name in ("docs", "photos"):
        write(tmp_path / name / "a.txt", f"{name}\n".encode())
        made.append(make_source(account, region, "ecs-file", name=name, path=str(tmp_path / name)))
    return made


@pytest.fixture
def policy(normal_vault, account, region, sources):
    vault = normal_vault("nightly-vault")
    made = policies.create_policy(
        actor=None, account=account, region=region, name="nightly", vault=vault, schedule=NIGHTLY, retention_days=30
    )
    for source in sources:
        policies.bind_source(actor=None, policy=made, source=source)
    return made


def refused(action):
    return AuditLog.objects.filter(action=action, outcome=AuditLog.Outcome.REFUSED)


def test_a_policy_knows_its_next_run_and_says_its_schedule(policy):
    # rule C1
    assert policy.next_run > timezone.now() and policy.next_run == NIGHTLY.next_after(policy.created)
    assert policy.schedule.describe() == "every day at 02:00 (Asia/Shanghai)"
    assert AuditLog.objects.filter(action="create_policy", object_id=policy.pk, outcome="success").exists()
    assert AuditLog.objects.filter(action="bind_source", object_id=policy.pk).count() == 2


@pytest.mark.parametrize(
    "change,field",
    [
        ({"vault_type": VaultType.REPLICATION_TARGET}, "vault"),  # rule R9
        ({"other_region": True}, "vault"),
        ({"retention_days": 10, "archive_after_days": 30}, "retention_days"),
        ({"retention_days": 0}, "retention_days"),
        ({"keep_monthly": 5000}, "keep_monthly"),
        ({"schedule": policies.policy_schedule(every=timedelta(minutes=5))}, "schedule"),
        ({"schedule": policies.policy_schedule(weekdays=(), times=((2, 0),))}, "schedule"),
        ({"name": "  "}, "name"),
        ({"name": "nightly"}, "name"),  # taken
    ],
)
def test_bad_policies_are_refused_field_by_field_and_audited(
    policy, make_vault, account, region, lrs_region, change, field
):
    kwargs = {"name": "another", "schedule": NIGHTLY, "vault": policy.vault}
    if "vault_type" in change:
        kwargs["vault"] = make_vault("target", vault_type=change.pop("vault_type"))
    if change.pop("other_region", False):
        kwargs["vault"] = make_vault("far", reg=lrs_region)
    kwargs.update(change)
    before = Policy.objects.count()
    with pytest.raises(ValidationError) as error:
        policies.create_policy(actor=None, account=account, region=region, **kwargs)
    assert field in error.value.message_dict
    assert Policy.objects.count() == before and refused("create_policy").count() == 1


def test_a_source_is_bound_once_and_only_from_its_own_account_and_region(policy, other_account, lrs_region, tmp_path):
    with pytest.raises(ValidationError, match="already"):
        policies.bind_source(actor=None, policy=policy, source=policy.sources.first())
    write(tmp_path / "far" / "x.txt", b"x")
    far = make_source(policy.account, lrs_region, "ecs-file", name="far", path=str(tmp_path / "far"))
    with pytest.raises(ValidationError, match="this account in"):
        policies.bind_source(actor=None, policy=policy, source=far)
    assert policy.bindings.count() == 2 and refused("bind_source").count() == 2


def test_a_run_starts_one_job_per_bound_source_with_the_policys_retention(
    policy, no_queue, django_capture_on_commit_callbacks
):
    # rule C2
    with django_capture_on_commit_callbacks(execute=True):
        run = policies.run_policy(actor=None, policy=policy)
    jobs = list(run.jobs.order_by("source__name"))
    assert [j.source.name for j in jobs] == ["docs", "photos"] and run.skipped == []
    assert all(j.retention_days == 30 and j.vault_id == policy.vault_id for j in jobs)
    assert sorted(no_queue) == sorted(j.pk for j in jobs)
    for job in jobs:
        run_backup_job(job.pk)
    points = BackupPoint.objects.filter(vault=policy.vault)
    assert points.count() == 2 and all(p.expires is not None for p in points)
    row = AuditLog.objects.get(action="run_policy", object_id=policy.pk)
    assert row.detail["trigger"] == "run now" and sorted(row.detail["jobs"]) == sorted(j.pk for j in jobs)


def test_a_run_never_overlaps_the_previous_one_of_the_same_source(policy, no_queue):
    # rule C2: the first run's jobs are still queued; the second run skips both and says why
    first = policies.run_policy(actor=None, policy=policy)
    second = policies.run_policy(actor=None, policy=policy)
    assert second.jobs.count() == 0
    assert [s["name"] for s in second.skipped] == ["docs", "photos"]
    assert all("still queued" in s["reason"] for s in second.skipped)
    for job in first.jobs.all():
        run_backup_job(job.pk)
    third = policies.run_policy(actor=None, policy=policy)
    assert third.jobs.count() == 2 and third.skipped == []


def test_missed_due_times_are_made_up_by_one_late_run(policy, no_queue):
    # rule C2: the scheduler was down for three nights; it runs once, says how late, and looks ahead
    missed = timezone.now() - timedelta(days=3)
    Policy.objects.filter(pk=policy.pk).update(next_run=missed)
    runs = policies.dispatch_due_policies()
    assert len(runs) == 1 and runs[0].trigger == PolicyRun.Trigger.SCHEDULED
    assert runs[0].scheduled_for == missed and runs[0].late_seconds >= 3 * 24 * 3600
    assert runs[0].jobs.count() == 2
    policy.refresh_from_db()
    assert timezone.now() < policy.next_run <= timezone.now() + timedelta(days=1)
    assert policies.dispatch_due_policies() == []  # nothing more is due


def test_a_run_on_time_is_not_late(policy, no_queue):
    Policy.objects.filter(pk=policy.pk).update(next_run=timezone.now() - timedelta(seconds=30))
    [run] = policies.dispatch_due_policies()
    assert run.late_seconds == 0


def test_a_paused_policy_makes_no_runs_and_resuming_does_not_replay(policy, no_queue):
    assert policies.pause_policy(actor=None, policy=policy).next_run is None
    Policy.objects.filter(pk=policy.pk).update(next_run=timezone.now() - timedelta(days=2))  # even were it due
    assert policies.dispatch_due_policies() == []
    policy = policies.resume_policy(actor=None, policy=policy)
    assert policy.next_run > timezone.now() and policies.dispatch_due_policies() == []
    assert AuditLog.objects.filter(action__in=["pause_policy", "resume_policy"], object_id=policy.pk).count() == 2


def test_editing_the_rules_applies_from_now_on(policy, no_queue):
    first = policies.run_policy(actor=None, policy=policy)
    policy = policies.update_policy(actor=None, policy=policy, retention_days=90)
    for job in first.jobs.all():
        run_backup_job(job.pk)
    second = policies.run_policy(actor=None, policy=policy)
    second_jobs = list(second.jobs.all())
    assert {j.retention_days for j in first.jobs.all()} == {30} and {j.retention_days for j in second_jobs} == {90}


def test_deleting_a_policy_keeps_its_points_and_sources(policy, no_queue, sources):
    run = policies.run_policy(actor=None, policy=policy)
    for job in run.jobs.all():
        run_backup_job(job.pk)
    points = set(BackupPoint.objects.filter(vault=policy.vault).values_list("pk", flat=True))
    policies.delete_policy(actor=None, policy=policy)
    assert not Policy.objects.filter(pk=policy.pk).exists()
    assert set(BackupPoint.objects.values_list("pk", flat=True)) == points
    assert all(type(s).objects.filter(pk=s.pk).exists() for s in sources)
    assert BackupJob.objects.filter(source__in=sources).count() == 2  # its jobs stay in the Backup Jobs list


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two dispatchers need a database two processes share")
def test_two_dispatchers_at_once_start_each_due_run_once(
    transactional_db, settings, normal_vault, account, region, tmp_path
):
    # rule C2: two processes run the dispatcher at the same moment over ten due policies
    vault = normal_vault("shared")
    due = []
    for i in range(10):
        made = policies.create_policy(
            actor=None, account=account, region=region, name=f"p{i}", vault=vault,
            schedule=policies.policy_schedule(every=parse_duration("1d")),
        )  # fmt: skip
        write(tmp_path / f"s{i}" / "a.txt", b"a")
        source = make_source(account, region, "ecs-file", name=f"s{i}", path=str(tmp_path / f"s{i}"))
        policies.bind_source(actor=None, policy=made, source=source)
        due.append(made.pk)
    Policy.objects.filter(pk__in=due).update(next_run=timezone.now() - timedelta(minutes=5))
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "OBJECT_STORE_ROOT": settings.OBJECT_STORE["root"],
        "CLOUD_BACKUP_MASTER_SECRET_FILE": str(settings.MASTER_SECRET_FILE),
        "BACKUP_PATH_ROOTS": ":".join(settings.BACKUP_PATH_ROOTS),
        "CLOUD_BACKUP_SINGLE_TENANT": "1" if settings.SINGLE_TENANT else "0",
    }
    script = "from vaults.services import policies; print(len(policies.dispatch_due_policies()))"
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert sum(counts) == 10, counts
    assert PolicyRun.objects.filter(policy__in=due).count() == 10
    assert BackupJob.objects.filter(policy_run__policy__in=due).count() == 10
    print(f"dispatch: two dispatchers at once over 10 due policies started {counts} runs: each once")


# -- the commands ------------------------------------------------------------------------------------------


def command(*args):
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_the_policy_commands_give_what_scripts_rely_on(normal_vault, account, region, tmp_path):
    vault = normal_vault("cli")
    write(tmp_path / "cli" / "a.txt", b"from the command line\n")
    source = command("source", "create", "--account", account.slug, "--region", region.code, "--name", "cli",
                     "--path", str(tmp_path / "cli"))  # fmt: skip
    made = command(
        "policy", "create", "--account", account.slug, "--region", region.code, "--name", "nightly",
        "--vault", vault.id, "--weekdays", "mon,thu", "--at", "02:00,14:00", "--timezone", "Asia/Shanghai",
        "--retention-days", "30", "--keep-monthly", "12", "--archive-after-days", "7",
    )  # fmt: skip
    assert {"id", "name", "vault", "next_run", "paused", "sources", "replication", "next_runs", "last_run"} <= set(made)
    assert made["vault"] == vault.id and made["paused"] is False and made["replication"] is None
    assert len(made["next_runs"]) == 5 and made["next_run"] == made["next_runs"][0] and made["last_run"] is None
    bound = command("policy", "bind", made["id"], "--source", str(source["id"]))
    assert bound["sources"] == [source["id"]]
    ran = command("policy", "run", made["id"], "--wait")
    assert ran["status"] == "succeeded" and len(ran["job"]) == 1 and len(ran["points"]) == 1
    shown = command("policy", "show", made["id"])
    last = shown["last_run"]
    assert last["late_seconds"] == 0 and last["jobs"][0]["point"] == ran["points"][0]
    assert last["jobs"][0] == {
        "source": source["id"],
        "job": ran["job"][0],
        "status": "succeeded",
        "point": ran["points"][0],
    }
    assert command("policy", "pause", made["id"])["next_runs"] == []
    assert [p["id"] for p in command("policy", "list", "--account", account.slug)["policies"]] == [made["id"]]
    assert command("policy", "delete", made["id"]) == {"id": made["id"], "deleted": True}


@pytest.mark.parametrize(
    "args,says",
    [
        (["--every", "5m"], "at most every 10 minutes"),
        (["--weekdays", "mon", "--at", "25:00"], "not a time of day"),
        (["--every", "1d", "--timezone", "Mars/Olympus"], "not a time zone"),
        ([], "give --every"),
    ],
)
def test_a_bad_schedule_on_the_command_line_is_one_clear_line(normal_vault, account, region, args, says):
    vault = normal_vault("cli-bad")
    with pytest.raises(CommandError, match=says):
        call_command("policy", "create", "--account", account.slug, "--region", region.code, "--name", "x",
                     "--vault", vault.id, *args, stdout=StringIO())  # fmt: skip
    assert not Policy.objects.exists()


def test_another_accounts_policy_and_sources_are_out_of_reach(policy, other_account, other_tmp_path):
    # rule A1 on the commands: the other account's source cannot be bound to this policy, and the reverse
    write(other_tmp_path / "theirs" / "t.txt", b"theirs")
    theirs = make_source(other_account, policy.region, "ecs-file", name="theirs", path=str(other_tmp_path / "theirs"))
    with pytest.raises(CommandError, match="this account"):
        call_command("policy", "bind", policy.pk, "--source", str(theirs.pk), stdout=StringIO())
    assert policy.bindings.count() == 2
    assert command("policy", "list", "--account", other_account.slug)["policies"] == []


# -- a policy's rules on its points (rule C3) ------------------------------------------------------------------


def test_points_keep_the_rules_of_the_run_that_made_them(policy, no_queue):
    policy = policies.update_policy(actor=None, policy=policy, keep_monthly=6, archive_after_days=10)
    run = policies.run_policy(actor=None, policy=policy)
    for job in run.jobs.all():
        run_backup_job(job.pk)
    policies.update_policy(actor=None, policy=policy, keep_monthly=0)  # later edits change nothing made before
    for point in BackupPoint.objects.filter(vault=policy.vault):
        assert point.by_policy == policy.pk and point.rules["keep_monthly"] == 6 and point.rules["name"] == "nightly"


def test_long_term_rules_on_a_year_of_daily_points(normal_vault, account, region, sources):
    # rule C3: retention 7 days; keep the first point of each of the last 4 weeks, 12 months and 2 years, and
    # the newest; everything else past its expiry goes. Calendar periods, in UTC here, counted back from now.
    vault = normal_vault("long-term")
    source = sources[0]
    rules = {"policy": "po-year", "name": "year", "time_zone": "UTC", "retain_at_least_one": True,
             "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2, "archive_after_days": None}  # fmt: skip
    now = timezone.now()
    days = {}
    for back in range(400):
        created = now - timedelta(days=back)
        point = BackupPoint.objects.create(
            vault=vault, source=source, source_type=source.source_type, source_location=source.location,
            created=created, expires=created + timedelta(days=7), manifest_key=f"none/{back}",
            by_policy="po-year", rules=rules,
        )  # fmt: skip
        days[point.pk] = created
    expired = set(policies_lifecycle.expire_points())
    kept = set(BackupPoint.objects.filter(vault=vault).values_list("pk", flat=True))
    assert kept | expired == set(days) and not kept & expired

    def firsts(key, count):
        """The oldest point of each of the `count` newest periods (by key) that have points."""
        groups = {}
        for pk, created in days.items():
            groups.setdefault(key(created), []).append((created, pk))
        newest = sorted(groups)[-count:]
        return {min(groups[period])[1] for period in newest if period in groups}

    this_week = now.date() - timedelta(days=now.weekday())
    weeks = firsts(lambda d: (this_week - (d.date() - timedelta(days=d.weekday()))).days // -7, 4)
    months = firsts(lambda d: (d.year, d.month), 12)
    years = firsts(lambda d: d.year, 2)
    unexpired = {pk for pk, created in days.items() if created + timedelta(days=7) > now}
    newest = max(days, key=days.get)
    assert kept == unexpired | weeks | months | years | {newest}
    reasons = {pk: policies_lifecycle.kept_by(BackupPoint.objects.get(pk=pk)) for pk in kept - unexpired}
    assert all(reasons.values()), reasons  # each one kept past its expiry says which rule keeps it
    print(f"retention: a year of daily points, 7 days and 4 weeks / 12 months / 2 years kept: {len(kept)} of 400 kept")


def test_the_archive_rule_moves_the_policys_points_and_the_vaults_own_setting_the_others(policy, no_queue):
    policy = policies.update_policy(actor=None, policy=policy, archive_after_days=3)
    run = policies.run_policy(actor=None, policy=policy)
    for job in run.jobs.all():
        run_backup_job(job.pk)
    made = list(BackupPoint.objects.filter(vault=policy.vault).values_list("pk", flat=True))
    assert policies_lifecycle.archive_due_points() == []  # not old enough
    BackupPoint.objects.filter(pk__in=made).update(created=timezone.now() - timedelta(days=4))
    assert sorted(policies_lifecycle.archive_due_points()) == sorted(made)
    assert set(BackupPoint.objects.filter(pk__in=made).values_list("tier", flat=True)) == {"archive"}
