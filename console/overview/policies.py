"""The Policy Center (rules C1, C2, C4): a region's backup policies, the create dialog (backup rule, long-term
retention, archive rule, replication rule, bound sources), and Run now, Pause / Resume and Delete.

A page that reads two apps (vaults' policies, replication's rule): it lives here, above both. Thin views:
the form parses, replication.services.save_policy saves the policy, its sources and its rule together.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.models import Region
from console.pages import action_dialog, create_dialog, done, region_page
from replication.services import destination_regions, policy_replication, save_policy
from vaults.models import BackupSource, Policy, Vault, VaultType
from vaults.schedule import WEEKDAYS, ScheduleError, parse_duration, parse_times
from vaults.services import policies

EVERY_DAY = [str(day) for day in range(7)]


class PolicyForm(forms.Form):
    name = forms.CharField(label="Policy name", max_length=64)
    vault = forms.ModelChoiceField(
        label="Back up into vault", queryset=Vault.objects.none(), empty_label="Select a vault"
    )
    weekdays = forms.MultipleChoiceField(
        label="Days", choices=[(str(i), day.capitalize()) for i, day in enumerate(WEEKDAYS)],
        widget=forms.CheckboxSelectMultiple, required=False, initial=EVERY_DAY,
    )  # fmt: skip
    times = forms.CharField(label="At (HH:MM, comma-separated)", initial="02:00", required=False)
    every = forms.CharField(label="Or every (10m, 6h, 1d; instead of days and times)", required=False)
    time_zone = forms.CharField(label="Time zone", max_length=64)
    retention_days = forms.IntegerField(label="Retention (days; empty keeps forever)", required=False, min_value=1)
    retain_at_least_one = forms.BooleanField(label="Retain at least one version", required=False)
    keep_weekly = forms.IntegerField(label="Keep the first point of each week for (weeks)", min_value=0, initial=0)
    keep_monthly = forms.IntegerField(label="... of each month for (months)", min_value=0, initial=0)
    keep_yearly = forms.IntegerField(label="... of each year for (years)", min_value=0, initial=0)
    archive_after_days = forms.IntegerField(label="Archive after (days; empty: never)", required=False, min_value=1)
    sources = forms.ModelMultipleChoiceField(
        label="Backup sources", queryset=BackupSource.objects.none(), widget=forms.CheckboxSelectMultiple,
        required=False,
    )  # fmt: skip
    replicate_to = forms.ModelChoiceField(
        label="Enable backup vault replication to", queryset=Region.objects.none(), required=False,
        empty_label="No replication", to_field_name="code",
    )  # fmt: skip
    replicate_name = forms.CharField(label="New Replication Target vault's name", max_length=64, required=False)

    def __init__(self, *args, account, region, **kwargs):
        super().__init__(*args, **kwargs)
        self.region = region
        vaults = Vault.objects.filter(account=account, region=region).exclude(vault_type=VaultType.REPLICATION_TARGET)
        self.fields["vault"].queryset = vaults
        self.fields["sources"].queryset = BackupSource.objects.filter(account=account, region=region)
        self.fields["replicate_to"].queryset = destination_regions(Vault(region=region))
        self.fields["time_zone"].initial = account.time_zone

    def clean(self):
        data = super().clean()
        try:
            if data.get("every"):
                data["schedule"] = policies.policy_schedule(
                    every=parse_duration(data["every"]), zone=data.get("time_zone") or "UTC"
                )
            else:
                data["schedule"] = policies.policy_schedule(
                    weekdays=[int(d) for d in data.get("weekdays") or ()],
                    times=parse_times(data.get("times")) if data.get("times") else (),
                    zone=data.get("time_zone") or "UTC",
                )
        except ScheduleError as exc:
            raise ValidationError({"times": str(exc)}) from None
        if data.get("replicate_to") and not data.get("replicate_name"):
            self.add_error("replicate_name", "Name the new Replication Target vault.")
        return data


def _policy_or_404(account, region, policy_id):
    return get_object_or_404(
        Policy.objects.select_related("vault", "region", "account"), account=account, region=region, pk=policy_id
    )


def _list_url(region):
    return reverse("console:policy-center", kwargs={"region": region.code})


@region_page
def policy_center(request, account, region):
    rows = []
    for policy in Policy.objects.filter(account=account, region=region).select_related("vault", "region", "account"):
        run = policy.runs.prefetch_related("jobs").first()
        rows.append(
            {
                "policy": policy,
                "sources": list(policy.sources.order_by("name")),
                "replication": policy_replication(policy),
                "last_run": run,
                "last_jobs": list(run.jobs.order_by("pk")) if run else [],
            }
        )
    return render(request, "console/policy_center.html", {"account": account, "region": region, "rows": rows})


@region_page
def policy_create(request, account, region):
    data = request.POST if request.method == "POST" else None

    def create(data):
        fields = {rule: data[rule] for rule in policies.RULES}
        fields["keep_weekly"], fields["keep_monthly"], fields["keep_yearly"] = (
            data["keep_weekly"] or 0, data["keep_monthly"] or 0, data["keep_yearly"] or 0,
        )  # fmt: skip
        replication = None
        if data["replicate_to"]:
            replication = {"destination_region": data["replicate_to"], "create": {"name": data["replicate_name"]}}
        return save_policy(
            actor=request.user,
            action="create_policy",
            account=account,
            region=region,
            save=lambda: policies.create_policy(
                actor=request.user,
                account=account,
                region=region,
                name=data["name"],
                vault=data["vault"],
                schedule=data["schedule"],
                **fields,
            ),  # fmt: skip
            sources=data["sources"],
            replication=replication,
        )

    return create_dialog(
        request,
        PolicyForm(data, account=account, region=region),
        template="console/policy_create.html",
        context=lambda form: {"account": account, "region": region, "partial": "policy-dialog"},
        action="create_policy",
        model=Policy,
        create=create,
        then=lambda policy: _list_url(region),
    )


@require_POST
@region_page
def policy_run(request, account, region, policy_id):
    policy = _policy_or_404(account, region, policy_id)
    run = policies.run_policy(actor=request.user, policy=policy)
    started = run.jobs.count()
    messages.success(request, f"{policy.name}: {started} backup job{'s' if started != 1 else ''} started.")
    for skipped in run.skipped:
        messages.warning(request, f"{skipped['name']} skipped: {skipped['reason']}.")
    return done(request, _list_url(region))


@require_POST
@region_page
def policy_pause(request, account, region, policy_id):
    policy = _policy_or_404(account, region, policy_id)
    if policy.paused:
        policies.resume_policy(actor=request.user, policy=policy)
    else:
        policies.pause_policy(actor=request.user, policy=policy)
    return done(request, _list_url(region))


@region_page
def policy_delete(request, account, region, policy_id):
    policy = _policy_or_404(account, region, policy_id)
    return action_dialog(
        request,
        forms.Form(request.POST or None),
        template="console/policy_delete.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "policy": policy,
            "partial": "delete-dialog",
            "replication": policy_replication(policy),
        },  # fmt: skip
        act=lambda data: policies.delete_policy(actor=request.user, policy=policy),
        then=lambda _: _list_url(region),
    )
