"""Rule G2 (seed: a vault in a region is restorable while it exists): an operator who disables a region
stops new work there, but its vaults, a standalone replication target included, stay visible,
restorable and deletable, and a running pair says why it stalled."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from console.models import Region
from console.services import save_region
from replication import engine
from replication.models import ReplicationPair
from replication.services import start_replication, stop_replication
from tests.restore.conftest import KiB, make_target, random_bytes, restore_ok, snapshot, tree_of, write
from vaults import services as vault_services
from vaults.models import SourceType, Vault, VaultType

HTMX = {"HTTP_HX_REQUEST": "true"}
CREATE = {"name": "replica-2", "description": "", "resource_group": None, "encryption_method": None, "kms_key": None}


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    write(root / "a.bin", random_bytes(40 * KiB, 1))
    write(root / "docs" / "b.txt", b"kept in a region that was disabled\n")
    return root


def disable(region):
    region.is_enabled = False
    save_region(actor=None, region=region)
    return Region.objects.get(pk=region.pk)


def test_a_disabled_region_keeps_its_vaults_and_stops_new_work(alice, account, point_of, src, tmp_path, region):
    point, _ = point_of("general", SourceType.NAS, path=src)
    vault = point.vault
    region = disable(region)
    code = region.code

    listing = alice.get(reverse("vaults:list", args=[code]))
    assert listing.status_code == 200
    body = listing.content.decode()
    assert vault.name in body and 'data-testid="region-disabled"' in body
    assert "disabled by the operator" in body and "stay visible, restorable and deletable" in body
    page = alice.get(reverse("vaults:detail", args=[code, vault.id])).content.decode()
    assert point.id in page and "Back up now</button>" in page  # the button is there, disabled

    # nothing new starts: no vault, no backup, no source, no replication from it
    refused = alice.post(
        reverse("vaults:create", args=[code]),
        {
            "name": "new-one",
            "vault_type": "general",
            "encryption_method": "cloud-backup-managed",
            "resource_group": vault.resource_group_id,
        },
    )
    assert refused.status_code == 422 and "disabled by the operator" in refused.content.decode()
    assert not Vault.objects.filter(name="new-one").exists()
    with pytest.raises(ValidationError, match="disabled by the operator"):
        vault_services.start_backup(actor=None, vault=Vault.objects.get(pk=vault.pk), source=point.source)
    assert "disabled by the operator" in vault_services.vault_backup_refusal(Vault.objects.get(pk=vault.pk))

    # restorable: a new target in the region and a restore that writes the point's files
    dest = tmp_path / "restored"
    dest.mkdir()
    job = restore_ok(point, make_target(account, region, "nas", dest))
    assert job.files_done == 2 and tree_of(dest) == snapshot(src)

    # deletable
    response = alice.post(reverse("vaults:delete", args=[code, vault.id]), {"confirmation": vault.name})
    assert response.status_code == 302 and not Vault.objects.filter(pk=vault.pk).exists()


def test_the_region_selector_shows_a_disabled_region_only_to_accounts_with_vaults_there(
    alice, client, other_user, make_vault, region, lrs_region
):
    make_vault("kept")
    disable(region)
    selector = alice.get(reverse("vaults:list", args=[lrs_region.code])).content.decode()
    assert 'cn-hangzhou</code> <span class="muted">(disabled)</span>' in selector
    client.force_login(other_user)
    assert "cn-hangzhou" not in client.get(reverse("vaults:list", args=[lrs_region.code])).content.decode()
    assert client.get("/regions/mars-1/vaults/").status_code == 404


def test_a_standalone_target_in_a_disabled_region_stays_restorable(alice, account, point_of, src, tmp_path):
    replica, target_region = point_of("replica", SourceType.NAS, path=src)
    pair = ReplicationPair.objects.get(target_vault=replica.vault)
    stop_replication(actor=None, pair=pair, confirmation=pair.source_vault.name)
    target_region = disable(target_region)

    target_vault = Vault.objects.get(pk=replica.vault_id)
    assert target_vault.vault_type == VaultType.REPLICATION_TARGET
    page = alice.get(reverse("vaults:detail", args=[target_region.code, target_vault.id]))
    assert page.status_code == 200 and replica.id in page.content.decode()
    dialog = alice.get(
        reverse("restore:create", args=[target_region.code]) + f"?vault={target_vault.id}&point={replica.id}", **HTMX
    )
    assert dialog.status_code == 200 and replica.id in dialog.content.decode()
    dest = tmp_path / "from-standalone"
    dest.mkdir()
    restore_ok(replica, make_target(account, target_region, "nas", dest))
    assert tree_of(dest) == snapshot(src)


def test_a_running_pair_to_a_disabled_region_waits_and_says_why(alice, point_of, src, lrs_region, general_vault):
    replica, target_region = point_of("replica", SourceType.NAS, path=src)
    pair = ReplicationPair.objects.get(target_vault=replica.vault)
    disabled = disable(target_region)

    with pytest.raises(engine.RegionDisabled, match="Copying waits: .*disabled by the operator"):
        engine.sync_pair(pair.id)
    row = alice.get(reverse("vaults:list", args=[pair.source_vault.region.code])).content.decode()
    assert "Copying waits:" in row and f"{lrs_region.name} is disabled by the operator" in row
    # no new pair to it either
    with pytest.raises(ValidationError, match="disabled by the operator"):
        start_replication(actor=None, source_vault=general_vault(), destination_region=disabled, create=CREATE)


def test_a_vault_in_error_is_not_retried_in_a_disabled_region(alice, make_vault, region):
    vault = make_vault("failed-init")
    Vault.objects.filter(pk=vault.pk).update(status="error", status_reason="the store was down")
    disable(region)
    page = alice.get(reverse("vaults:detail", args=[region.code, vault.id])).content.decode()
    assert "Retry initialization" not in page
    response = alice.post(reverse("vaults:retry", args=[region.code, vault.id]))
    assert response.status_code == 409 and "disabled by the operator" in response.content.decode()
    assert Vault.objects.get(pk=vault.pk).status == "error"


def test_the_reconcile_leaves_a_waiting_pair_alone_until_its_region_is_enabled(monkeypatch, point_of, src, lrs_region):
    from replication import services as replication_services
    from replication.tasks import reconcile_pairs_task, sync_pair_task

    replica, target_region = point_of("replica", SourceType.NAS, path=src)
    pair = ReplicationPair.objects.get(target_vault=replica.vault)
    sent = []
    monkeypatch.setattr(replication_services, "enqueue_sync", sent.append)
    disabled = disable(target_region)
    reconcile_pairs_task()
    assert sent == []  # no message for a queue that may have no worker
    sync_pair_task.apply(args=(pair.id,))  # a sync already queued ends at once, without retrying
    assert ReplicationPair.objects.get(pk=pair.pk).attempts == 0
    disabled.is_enabled = True
    save_region(actor=None, region=disabled)
    reconcile_pairs_task()
    assert sent == [pair.id]
