"""Storage Vaults pages: list, create dialog, detail, status polling, delete dialog.

Views are thin: they scope to the account and region, parse a form, call a
service, and render the page or, for htmx, the fragment of the same template.
"""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.pages import action_dialog, create_dialog, create_once, done, poll, region_page, render_page

from . import selectors, services
from .forms import ArchivingForm, PointFilterForm, VaultCreateForm, VaultDeleteForm
from .models import Vault, VaultStatus, VerifyRun

# Callables other apps add; each gets a page of vaults and sets what it shows on their rows and pages
# (replication: `vault.rep`, the pair, its progress and whether it can be configured).
VAULT_ANNOTATORS = []


def annotate(vaults):
    """What other apps show about these vaults, in a fixed number of queries for the page."""
    for annotator in VAULT_ANNOTATORS:
        annotator(vaults)
    return vaults


@region_page
def vault_list(request, account, region):
    """Rule V5: the Storage Vaults page of one region."""
    page = Paginator(selectors.vaults_of(account, region), settings.VAULTS_PER_PAGE).get_page(request.GET.get("page"))
    vaults = list(page.object_list)
    annotate(vaults)
    context = {"account": account, "region": region, "page": page, "vaults": vaults}
    if request.htmx and request.htmx.target == "vault-table":
        context["partial"] = "vault-table"
    return render_page(request, "vaults/vault_list.html", context)


@region_page
def vault_create(request, account, region):
    def create(data):
        return services.create_vault(actor=request.user, account=account, region=region, **data)

    return create_dialog(
        request,
        VaultCreateForm(request.POST or None, account=account, region=region),
        template="vaults/vault_create.html",
        context=lambda form: {"account": account, "region": region, "partial": "create-dialog"},
        action="create_vault",
        model=Vault,
        create=create,
        then=lambda vault: reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id}),
    )


@region_page
def kms_key_field(request, account, region):
    """The KMS KeyId field, shown when KMS is the chosen encryption method (keys of this region only)."""
    form = VaultCreateForm(
        account=account, region=region, initial={"encryption_method": request.GET.get("encryption_method")}
    )
    return render(request, "vaults/vault_create.html#kms-key-field", {"form": form, "region": region})


@region_page
def vault_detail(request, account, region, vault_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    point_filter = PointFilterForm(request.GET)
    page = Paginator(point_filter.filter(selectors.points_of(vault)), settings.POINTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    refusals = services.point_delete_refusals(vault, page.object_list)
    context = {
        "account": account,
        "region": region,
        "vault": vault,
        "page": page,
        "point_filter": point_filter,
        "points": [(point, refusals[point.pk]) for point in page.object_list],
        "deletion_refusal": services.deletion_refusal(vault),
        "backup_refusal": services.vault_backup_refusal(vault),
        "lock_refusal": services.lock_refusal(vault),
        "archiving_refusal": services.archiving_refusal(vault),
        "verify": vault.verify_runs.first(),
        "rep": getattr(annotate([vault])[0], "rep", None),
        "restore_jobs": vault.restore_jobs.select_related("target")[:5],
    }
    return render(request, "vaults/vault_detail.html", context)


@region_page
def vault_status(request, account, region, vault_id):
    """The status while a vault initializes; polling stops (286) once it has left Initializing.

    What depends on the status changes with it: the Storage Vaults row polls as a whole
    (`?row=1`: its actions and replication cell come back too), and the vault page, where
    most of the page depends on it, is reloaded (HX-Refresh).
    """
    vault = selectors.vault_or_404(account, vault_id, region)
    settled = vault.status != VaultStatus.INITIALIZING
    if request.GET.get("row"):
        annotate([vault])
        response = render(request, "vaults/vault_list.html#vault-row", {"vault": vault, "region": region})
    else:
        response = render(request, "vaults/_status.html", {"vault": vault, "region": region})
        if settled:
            response["HX-Refresh"] = "true"
    return poll(response, settled=settled)


@region_page
def vault_delete(request, account, region, vault_id):
    """Rule V7: typed confirmation; refusals are shown, nothing changes."""
    vault = selectors.vault_or_404(account, vault_id, region)
    return action_dialog(
        request,
        VaultDeleteForm(request.POST or None),
        template="vaults/vault_delete.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "vault": vault,
            "partial": "delete-dialog",
            "deletion_refusal": services.deletion_refusal(vault),
        },
        act=lambda data: services.delete_vault(actor=request.user, vault=vault, confirmation=data["confirmation"]),
        then=lambda _: reverse("vaults:list", kwargs={"region": region.code}),
    )


@require_POST
@region_page
def vault_retry(request, account, region, vault_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    try:
        services.retry_vault_initialization(actor=request.user, vault=vault)
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=409)
    url = reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id})
    return done(request, url)


@region_page
def vault_lock(request, account, region, vault_id):
    """Rule L1: turning the backup lock on asks for the vault's name, since it cannot be turned off."""
    vault = selectors.vault_or_404(account, vault_id, region)
    return action_dialog(
        request,
        VaultDeleteForm(request.POST or None),
        template="vaults/vault_lock.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "vault": vault,
            "partial": "lock-dialog",
            "refusal": services.lock_refusal(vault),
        },
        act=lambda data: services.enable_backup_lock(
            actor=request.user, vault=vault, confirmation=data["confirmation"]
        ),
        then=lambda _: reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id}),
    )


@require_POST
@region_page
def vault_archiving(request, account, region, vault_id):
    """Rule P5: the automatic archiving age of a vault (empty turns it off)."""
    vault = selectors.vault_or_404(account, vault_id, region)
    form = ArchivingForm(request.POST)
    url = reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id})
    if form.is_valid():
        try:
            services.set_archive_after_days(
                actor=request.user, vault=vault, days=form.cleaned_data["archive_after_days"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Automatic archiving was saved.")
    else:
        messages.error(request, "Enter a number of days from 1, or leave it empty.")
    return done(request, url)


@require_POST
@region_page
def vault_verify(request, account, region, vault_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    try:
        create_once(request, "start_verify", VerifyRun, lambda: services.start_verify(actor=request.user, vault=vault))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    url = reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id})
    return done(request, url)


@region_page
def vault_verify_report(request, account, region, vault_id):
    """The latest verification's report; polling stops (286) once it has finished."""
    vault = selectors.vault_or_404(account, vault_id, region)
    run = vault.verify_runs.first()
    response = render(request, "vaults/_verify.html", {"vault": vault, "region": region, "verify": run})
    return poll(response, settled=run is None or not run.is_active)


@require_POST
@region_page
def point_bring_back(request, account, region, vault_id, point_id):
    vault = selectors.vault_or_404(account, vault_id, region)
    point = selectors.point_or_404(vault, point_id)
    try:
        services.bring_back_point(actor=request.user, point=point)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    url = reverse("vaults:detail", kwargs={"region": region.code, "vault_id": vault.id})
    return done(request, url)
