"""The Configure / Initiate / Stop panels and the progress fragment, through the test client."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console.models import Region
from replication import engine, services
from replication.models import ReplicationPair
from vaults import services as vault_services
from vaults.models import BackupPoint, Vault, VaultType

HTMX = {"HTTP_HX_REQUEST": "true"}


def panel_url(vault, action=""):
    return f"/regions/{vault.region.code}/vaults/{vault.id}/replication/{action}"


def test_actions_column_offers_configure_or_says_why_not(alice, source_vault, make_vault):
    # rules R1, R6
    make_vault("trial", vault_type=VaultType.OSS_TRIAL)
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert f'hx-get="{panel_url(source_vault)}"' in body
    assert 'title="Free-trial vaults cannot be replicated."' in body


def test_panel_lists_destination_regions_but_the_sources_own(alice, source_vault):
    body = alice.get(panel_url(source_vault), **HTMX).content.decode()
    assert "Initiate Backup Vault Replication" in body
    assert "Select Replication Target Vault" in body and "Create Replication Target Vault" in body
    assert 'value="us-west-1"' in body and 'value="cn-hangzhou"' not in body


def test_choosing_a_region_loads_its_free_target_vaults(alice, source_vault, make_vault, lrs_region, region):
    free = vault_services.initialize_vault_storage(
        make_vault("west-rt", reg=lrs_region, vault_type=VaultType.REPLICATION_TARGET).id
    )
    make_vault("east-rt", reg=region, vault_type=VaultType.REPLICATION_TARGET)
    body = alice.get(
        panel_url(source_vault), {"mode": "select", "destination_region": "us-west-1"}, **HTMX
    ).content.decode()
    assert free.name in body and "east-rt" not in body and 'class="error"' not in body


def test_create_mode_with_kms_lists_the_destination_regions_keys(alice, account, make_vault, region, lrs_region):
    key = vault_services.create_kms_key(actor=None, account=account, region=region, alias="east-key")
    west = vault_services.create_kms_key(actor=None, account=account, region=lrs_region, alias="west-key")
    source = vault_services.initialize_vault_storage(make_vault("kms-src", encryption_method="kms", kms_key=key).id)
    body = alice.get(
        panel_url(source), {"mode": "create", "destination_region": "us-west-1", "encryption_method": "kms"}, **HTMX
    ).content.decode()
    assert west.key_id in body and key.key_id not in body
    assert "KMS key cannot be changed" in body


def test_create_target_from_the_panel_then_progress_then_stop(alice, source_vault, backup, account):
    # rules R6, R8, R12
    point = backup(source_vault)
    group = account.resource_groups.get()
    bad = alice.post(
        panel_url(source_vault),
        {
            "mode": "create",
            "destination_region": "cn-hangzhou",
            "name": "dr",
            "resource_group": group.pk,
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    assert bad.status_code == 422 and not ReplicationPair.objects.exists()
    ok = alice.post(
        panel_url(source_vault),
        {
            "mode": "create",
            "destination_region": "us-west-1",
            "name": "dr",
            "description": "disaster recovery",
            "resource_group": group.pk,
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    assert ok["HX-Redirect"] == "/regions/cn-hangzhou/vaults/"
    pair = ReplicationPair.objects.get()
    target = Vault.objects.get(name="dr")
    assert target.vault_type == VaultType.REPLICATION_TARGET and target.description == "disaster recovery"
    polling = alice.get(panel_url(source_vault, "progress/"), **HTMX)
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    engine.sync_pair(pair.id)  # what the destination region's worker does
    done = alice.get(panel_url(source_vault, "progress/"), **HTMX)
    assert done.status_code == 286 and "Running" in done.content.decode()
    # the destination region's Storage Vaults page shows the target and where it comes from
    west = alice.get("/regions/us-west-1/vaults/").content.decode()
    assert "dr" in west and "source" in west and "China (Hangzhou)" in west
    assert BackupPoint.objects.filter(vault=target, created=point.created).exists()
    # a double-submitted form does not make a second pair
    again = alice.post(
        panel_url(source_vault),
        {
            "mode": "create",
            "destination_region": "us-west-1",
            "name": "dr2",
            "resource_group": group.pk,
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    assert again.status_code == 422 and "already replicated" in again.content.decode()
    assert ReplicationPair.objects.count() == 1
    # stop, with typed confirmation
    stop = panel_url(source_vault, "stop/")
    assert "cannot be resumed" in alice.get(stop, **HTMX).content.decode()
    assert alice.post(stop, {"confirmation": "nope"}, **HTMX).status_code == 422
    assert alice.post(stop, {"confirmation": source_vault.name}, **HTMX)["HX-Redirect"].endswith("/vaults/")
    pair.refresh_from_db()
    assert pair.state == ReplicationPair.State.STOPPED
    assert "standalone vault" in alice.get("/regions/us-west-1/vaults/").content.decode()


def test_panels_of_another_accounts_vault_are_404(alice, make_vault, other_account):
    # rule A1
    theirs = vault_services.initialize_vault_storage(make_vault("theirs", acct=other_account).id)
    for action in ["", "stop/", "progress/"]:
        assert alice.get(panel_url(theirs, action), **HTMX).status_code == 404
        assert alice.post(panel_url(theirs, action), {"mode": "create"}, **HTMX).status_code == 404
    assert not ReplicationPair.objects.exists()


@pytest.mark.parametrize("page", ["/regions/cn-hangzhou/vaults/", "/regions/us-west-1/vaults/"])
def test_list_queries_stay_constant_with_pairs(alice, make_vault, backup, page):
    # rule V5 with replication: the row of each replicated vault (peer, progress, lag) costs no query of its own
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert alice.get(page).status_code == 200
        return len(captured)

    def replicated_vault(n):
        vault = vault_services.initialize_vault_storage(make_vault(f"replicated-{n}").id)
        backup(vault)
        services.start_replication(
            actor=None,
            source_vault=vault,
            destination_region=Region.objects.get(code="us-west-1"),
            create={"name": f"dr-{n}", "description": "", "resource_group": None},
        )

    replicated_vault(0)
    queries()  # the first visit of a region also remembers it in the session
    one = queries()
    for n in range(1, 4):
        replicated_vault(n)
    assert queries() == one <= 20


def test_a_page_shows_the_same_lag_as_the_pair(make_vault, backup):
    # the lag of a page's pairs, computed in one query, is the pair's own: behind before the copy, 0 after
    from replication.selectors import replication_of

    vault = vault_services.initialize_vault_storage(make_vault("lagging").id)
    point = backup(vault)
    pair = services.start_replication(
        actor=None,
        source_vault=vault,
        destination_region=Region.objects.get(code="us-west-1"),
        create={"name": "lagging-dr", "description": "", "resource_group": None},
    )
    on_page = replication_of([vault])[vault.id].pair
    assert on_page.oldest_pending == point.created
    assert abs(on_page.lag_seconds - ReplicationPair.objects.get(pk=pair.pk).lag_seconds) < 1
    engine.sync_pair(pair.id)
    assert replication_of([vault])[vault.id].pair.lag_seconds == 0
