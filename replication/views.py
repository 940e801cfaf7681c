"""The Configure / Initiate / Stop replication panels and the progress fragment.

Thin views: they scope to the account and region, parse the form and call
`replication.services`; the panel re-renders itself (htmx) when the destination
region or the mode changes, so its selects always match the chosen region.
"""

from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse

from console.pages import action_dialog, create_dialog, poll, region_page
from vaults import selectors as vault_selectors

from . import services
from .forms import InitiateReplicationForm, StopReplicationForm
from .models import ReplicationPair
from .selectors import replication_of


def _start(actor, vault, form):
    """The pair the panel asks for: to a new Replication Target vault, or to a free one selected."""
    data = form.cleaned_data
    if form.is_create:
        return services.start_replication(
            actor=actor,
            source_vault=vault,
            destination_region=data["destination_region"],
            create={
                "name": data["name"],
                "description": data["description"],
                "resource_group": data["resource_group"],
                "encryption_method": data["encryption_method"],  # empty: the source's (the service decides)
                "kms_key": data["kms_key"],
            },
        )
    if data["target_vault"] is None:
        raise ValidationError({"target_vault": "Select a Replication Target Vault."})
    return services.start_replication(
        actor=actor,
        source_vault=vault,
        destination_region=data["destination_region"],
        target_vault=data["target_vault"],
    )


@region_page
def initiate(request, account, region, vault_id):
    """Rule R6: Configure backup vault replication -> the Initiate Backup Vault Replication panel."""
    vault = vault_selectors.vault_or_404(account, vault_id, region)
    form = InitiateReplicationForm(
        request.POST if request.method == "POST" else (request.GET or None), source_vault=vault
    )
    return create_dialog(
        request,
        form,
        template="replication/initiate.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "vault": vault,
            "partial": "initiate-dialog",
            "refusal": services.replication_refusal(vault),
        },
        action="start_replication",
        model=ReplicationPair,
        create=lambda data: _start(request.user, vault, form),
        then=lambda pair: reverse("vaults:list", kwargs={"region": region.code}),
    )


@region_page
def stop(request, account, region, vault_id):
    """Rule R12: Stop backup vault replication, in the source's region, with typed confirmation."""
    vault = vault_selectors.vault_or_404(account, vault_id, region)

    def stop_pair(data):
        pair = services.pair_to_stop(vault)
        return services.stop_replication(actor=request.user, pair=pair, confirmation=data["confirmation"])

    return action_dialog(
        request,
        StopReplicationForm(request.POST or None),
        template="replication/stop.html",
        context=lambda form: {
            "account": account,
            "region": region,
            "vault": vault,
            "rep": replication_of([vault])[vault.id],
            "partial": "stop-dialog",
        },
        act=stop_pair,
        then=lambda _: reverse("vaults:list", kwargs={"region": region.code}),
    )


@region_page
def progress(request, account, region, vault_id):
    """The replication cell of a vault; polling stops (286) when nothing is moving."""
    vault = vault_selectors.vault_or_404(account, vault_id, region)
    info = replication_of([vault])[vault.id]
    response = render(request, "replication/_cell.html", {"vault": vault, "rep": info, "region": region})
    return poll(response, settled=not info.is_moving)
