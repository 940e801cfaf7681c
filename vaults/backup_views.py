"""Backup Sources and Backup Jobs pages, the "Back up now" dialog and point deletion.

Thin views: scope to the account and region, parse a form, call a service.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.pages import action_dialog, create_dialog, done, jobs_page, region_page

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

    def register(data):
        fields = dict(data)
        return services.register_bucket(
            actor=request.user, account=account, region=region, name=fields.pop("bucket"), **fields
        )

    return action_dialog(
        request,
        BucketRegisterForm(request.POST or None),
        template="vaults/bucket_register.html",
        context=lambda form: {"account": account, "region": region, "partial": "bucket-dialog"},
        act=register,
        then=lambda _: reverse("backups:sources", kwargs={"region": region.code}),
    )


@region_page
def source_create(request, account, region):
    def create(data):
        return services.create_backup_source(actor=request.user, account=account, region=region, **data)

    return create_dialog(
        request,
        BackupSourceForm(request.POST or None),
        template="vaults/source_create.html",
        context=lambda form: {"account": account, "region": region, "partial": "source-dialog"},
        action="create_backup_source",
        model=BackupSource,
        create=create,
        then=lambda source: reverse("backups:sources", kwargs={"region": region.code}),
    )


@region_page
def job_list(request, account, region):
    """Backup Jobs of the region; the table polls while a job is queued or running."""
    jobs = selectors.jobs_of(account, region)
    return jobs_page(request, "vaults/job_list.html", "job-table", jobs, {"account": account, "region": region})


@region_page
def backup_start(request, account, region, vault_id):
    vault = selectors.vault_or_404(account, vault_id, region)

    def create(data):
        return services.start_backup(actor=request.user, vault=vault, **data)

    return create_dialog(
        request,
        BackupStartForm(request.POST or None, account=account, region=region),
        template="vaults/backup_start.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "vault": vault,
            "partial": "backup-dialog",
            "refusal": services.vault_backup_refusal(vault),
        },
        action="start_backup",
        model=BackupJob,
        create=create,
        then=lambda job: reverse("backups:list", kwargs={"region": region.code}),
    )


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
