"""Backup Sources and Backup Jobs pages, the "Back up now" dialog and point deletion.

Thin views: scope to the account and region, parse a form, call a service.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.forms import add_service_errors
from console.pages import create_once, done, jobs_page, region_page, render_page, repeated

from . import selectors, services
from .forms import BackupSourceForm, BackupStartForm, BucketRegisterForm
from .models import BackupJob, BackupSource


@region_page
def source_list(request, account, region):
    context = {
        "account": account,
        "region": region,
        "sources": selectors.sources_of(account, region),
        "buckets": selectors.buckets_of(account, region),
    }
    return render(request, "vaults/source_list.html", context)


@region_page
def bucket_register(request, account, region):
    """Register one of the account's own OSS buckets with an access key of its own (rule T2)."""
    form = BucketRegisterForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            fields = form.cleaned_data
            try:
                services.register_bucket(
                    actor=request.user, account=account, region=region, name=fields.pop("bucket"), **fields
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, reverse("backups:sources", kwargs={"region": region.code}))
        status = 422
    context = {"account": account, "region": region, "form": form, "partial": "bucket-dialog"}
    return render_page(request, "vaults/bucket_register.html", context, status=status)


@region_page
def source_create(request, account, region):
    form = BackupSourceForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if repeated(request, "create_backup_source", BackupSource) is not None:
            return done(request, reverse("backups:sources", kwargs={"region": region.code}))
        if form.is_valid():
            try:
                create_once(
                    request,
                    "create_backup_source",
                    BackupSource,
                    lambda: services.create_backup_source(
                        actor=request.user, account=account, region=region, **form.cleaned_data
                    ),
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, reverse("backups:sources", kwargs={"region": region.code}))
        status = 422
    context = {"account": account, "region": region, "form": form, "partial": "source-dialog"}
    return render_page(request, "vaults/source_create.html", context, status=status)


@region_page
def job_list(request, account, region):
    """Backup Jobs of the region; the table polls while a job is queued or running."""
    jobs = selectors.jobs_of(account, region)
    return jobs_page(request, "vaults/job_list.html", "job-table", jobs, {"account": account, "region": region})


@region_page
def backup_start(request, account, region, vault_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    form = BackupStartForm(request.POST or None, account=account, region=region)
    status = 200
    if request.method == "POST":
        if repeated(request, "start_backup", BackupJob) is not None:
            return done(request, reverse("backups:list", kwargs={"region": region.code}))
        if form.is_valid():
            data = form.cleaned_data
            try:
                create_once(
                    request,
                    "start_backup",
                    BackupJob,
                    lambda: services.start_backup(
                        actor=request.user,
                        vault=vault,
                        source=data["source"],
                        retention_days=data["retention_days"],
                        fail_on_change=data["fail_on_change"],
                    ),
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, reverse("backups:list", kwargs={"region": region.code}))
        status = 422
    context = {
        "account": account,
        "region": region,
        "vault": vault,
        "form": form,
        "partial": "backup-dialog",
        "refusal": services.vault_backup_refusal(vault),
    }
    return render_page(request, "vaults/backup_start.html", context, status=status)


@require_POST
@region_page
def point_delete(request, account, region, vault_id, point_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    point = selectors.point_or_404(vault, point_id)
    try:
        services.delete_point(actor=request.user, point=point)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Backup point {point_id} was deleted.")
    return done(request, reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id}))
