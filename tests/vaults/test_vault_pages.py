"""Storage Vaults pages through the test client: full pages and htmx fragments of the same URLs."""

from datetime import UTC

import pytest

from console.models import AuditLog
from vaults import services
from vaults.dataplane import objectstore
from vaults.models import EncryptionMethod, Vault

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_empty_region_shows_create_call_to_action(alice):
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert "There are no vaults in China (Hangzhou) yet." in body
    assert 'hx-get="/regions/cn-hangzhou/vaults/create/"' in body


def test_list_shows_the_columns_of_rule_v5(alice, make_vault, account, region):
    # rule V5
    key = services.create_kms_key(actor=None, account=account, region=region, alias="k1")
    vault = make_vault("finance", encryption_method=EncryptionMethod.KMS, kms_key=key)
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    for header in [
        "Vault",
        "Type",
        "Status",
        "Redundancy",
        "Encryption",
        "Storage Vault Data Size",
        "Replication",
        "Actions",
    ]:
        assert f"<th{' class="num"' if 'Size' in header else ''}>{header}</th>" in body
    for value in [
        "finance",
        vault.id,
        "General Backup",
        "Initializing",
        "ZRS",
        "KMS",
        key.key_id,
        "0\xa0bytes",
        "Not replicated",
    ]:
        assert value in body, value


def test_list_only_shows_the_region_of_the_url(alice, make_vault, lrs_region):
    make_vault("east")
    make_vault("west", reg=lrs_region)
    east = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    west = alice.get("/regions/us-west-1/vaults/").content.decode()
    assert ">east<" in east and ">west<" not in east
    assert ">west<" in west and ">east<" not in west


def test_htmx_pagination_returns_the_table_fragment_only(alice, make_vault, settings):
    settings.VAULTS_PER_PAGE = 2
    for i in range(5):
        make_vault(f"v{i}")
    response = alice.get("/regions/cn-hangzhou/vaults/?page=3", HTTP_HX_TARGET="vault-table", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="vault-table">') and "<html" not in body
    assert "Page 3 of 3" in body and body.count('<tr id="vault-') == 1


@pytest.mark.parametrize("count", [1, 500])
def test_query_count_does_not_grow_with_vaults(alice, account, region, count, django_assert_max_num_queries):
    # rule V5: one page of any number of vaults costs the same queries
    template = services.create_vault(actor=None, account=account, region=region, name="template")
    Vault.objects.bulk_create(
        Vault(
            account=account,
            region=region,
            resource_group=template.resource_group,
            name=f"bulk-{i}",
            redundancy="ZRS",
            wrapped_data_key=b"x",
        )
        for i in range(count - 1)
    )
    with django_assert_max_num_queries(16):
        response = alice.get("/regions/cn-hangzhou/vaults/")
    assert response.status_code == 200
    assert response.content.decode().count('<tr id="vault-') == min(count, 25)


def test_create_dialog_is_a_fragment_for_htmx_and_a_page_otherwise(alice):
    fragment = alice.get("/regions/cn-hangzhou/vaults/create/", **HTMX).content.decode()
    page = alice.get("/regions/cn-hangzhou/vaults/create/").content.decode()
    assert fragment.lstrip().startswith("<dialog open") and "<html" not in fragment
    assert "<html" in page and "<dialog open" in page
    assert "Redundancy: <strong>ZRS</strong>" in fragment


def test_kms_field_lists_only_keys_of_that_region_and_account(alice, account, other_account, region, lrs_region):
    # rule V4: KMS KeyId from the vault's own region
    mine = services.create_kms_key(actor=None, account=account, region=region, alias="here")
    services.create_kms_key(actor=None, account=account, region=lrs_region, alias="there")
    services.create_kms_key(actor=None, account=other_account, region=region, alias="theirs")
    body = alice.get("/regions/cn-hangzhou/vaults/kms-key-field/?encryption_method=kms", **HTMX).content.decode()
    assert mine.key_id in body and "there" not in body and "theirs" not in body
    empty = alice.get("/regions/cn-hangzhou/vaults/kms-key-field/?encryption_method=cloud-backup-managed", **HTMX)
    assert "<select" not in empty.content.decode()


def test_create_with_errors_rerenders_the_dialog_with_422(alice, make_vault):
    make_vault("taken")
    response = alice.post(
        "/regions/cn-hangzhou/vaults/create/",
        {
            "name": "taken",
            "resource_group": "",
            "vault_type": "general",
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    assert response.status_code == 422
    response = alice.post(
        "/regions/cn-hangzhou/vaults/create/",
        {
            "name": "taken",
            "resource_group": Vault.objects.get().resource_group_id,
            "vault_type": "general",
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    body = response.content.decode()
    assert response.status_code == 422
    assert "already exists" in body and body.lstrip().startswith("<dialog open")
    assert Vault.objects.count() == 1


def test_create_kms_without_key_is_a_field_error(alice, account):
    group = account.resource_groups.get()
    response = alice.post(
        "/regions/cn-hangzhou/vaults/create/",
        {
            "name": "k",
            "resource_group": group.pk,
            "vault_type": "general",
            "encryption_method": "kms",
        },
        **HTMX,
    )
    assert response.status_code == 422
    assert "Choose a KMS KeyId" in response.content.decode()
    assert not Vault.objects.exists()


def test_create_success_redirects_to_the_detail_page(alice, account, user):
    group = account.resource_groups.get()
    response = alice.post(
        "/regions/cn-hangzhou/vaults/create/",
        {
            "name": "new one",
            "description": "d",
            "resource_group": group.pk,
            "vault_type": "general",
            "encryption_method": "cloud-backup-managed",
        },
        **HTMX,
    )
    vault = Vault.objects.get(name="new one")
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/regions/cn-hangzhou/vaults/{vault.id}/"
    audit = AuditLog.objects.get(action="create_vault", object_id=vault.id)
    assert audit.actor == user and audit.region_code == "cn-hangzhou"


def test_detail_shows_all_fields(alice, make_vault):
    vault = make_vault("details", description="quarterly data")
    body = alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/").content.decode()
    for value in [
        vault.id,
        "quarterly data",
        "default",
        "General Backup",
        "ZRS",
        "Cloud Backup-managed",
        "Storage Vault Data Size",
        "holds no backup points",
    ]:
        assert value in body


def test_detail_of_a_vault_of_another_region_is_404(alice, make_vault, lrs_region):
    vault = make_vault("west", reg=lrs_region)
    assert alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/").status_code == 404


def test_status_fragment_polls_until_the_vault_is_ready(alice, make_vault):
    vault = make_vault("polled")
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/status/"
    polling = alice.get(url, **HTMX)
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    services.initialize_vault_storage(vault.id)
    done = alice.get(url, **HTMX)
    assert done.status_code == 286 and "Normal" in done.content.decode()
    assert done["HX-Refresh"] == "true"  # the vault page: what depends on the status is rendered again


def test_a_storage_vaults_row_polls_whole_and_comes_back_with_its_actions(alice, make_vault):
    # the row of an initializing vault polls itself; once Normal, its actions and replication cell come back too
    vault = make_vault("row-polled")
    listing = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert f'hx-get="/regions/cn-hangzhou/vaults/{vault.id}/status/?row=1"' in listing
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/status/?row=1"
    polling = alice.get(url, **HTMX)
    assert polling.status_code == 200 and 'aria-disabled="true">Configure backup vault replication' in (
        polling.content.decode()
    )
    services.initialize_vault_storage(vault.id)
    done = alice.get(url, **HTMX)
    body = done.content.decode()
    assert done.status_code == 286 and body.lstrip().startswith(f'<tr id="vault-{vault.id}"')
    assert "Normal" in body and f'hx-get="/regions/cn-hangzhou/vaults/{vault.id}/replication/"' in body
    assert "every 2s" not in body


def test_delete_needs_the_typed_name_and_removes_data_and_rows(
    alice, make_vault, region, django_capture_on_commit_callbacks
):
    # rule V7
    vault = make_vault("doomed")
    services.initialize_vault_storage(vault.id)
    store = objectstore.region_store(region)
    assert store.list_keys(vault.storage_prefix)
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/delete/"
    wrong = alice.post(url, {"confirmation": "doome"}, **HTMX)
    assert wrong.status_code == 422 and "Type the vault&#x27;s name" in wrong.content.decode()
    assert Vault.objects.filter(pk=vault.pk).exists() and store.list_keys(vault.storage_prefix)
    with django_capture_on_commit_callbacks(execute=True):
        right = alice.post(url, {"confirmation": "doomed"}, **HTMX)
    assert right["HX-Redirect"] == "/regions/cn-hangzhou/vaults/"
    assert not Vault.objects.filter(pk=vault.pk).exists()
    assert store.list_keys(vault.storage_prefix) == []


def test_delete_is_refused_under_backup_lock(alice, make_vault):
    # rule V7 / L1
    vault = make_vault("locked")
    services.enable_backup_lock(actor=None, vault=vault)
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/delete/"
    assert "cannot be deleted" in alice.get(url, **HTMX).content.decode()
    response = alice.post(url, {"confirmation": "locked"}, **HTMX)
    assert response.status_code == 422 and "Backup lock is on" in response.content.decode()
    assert Vault.objects.filter(pk=vault.pk).exists()
    refusal = AuditLog.objects.get(action="delete_vault")
    assert refusal.outcome == "refused"


def test_no_inline_scripts_and_a_strict_csp(alice):
    response = alice.get("/regions/cn-hangzhou/vaults/")
    body = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "<script>" not in body and "<script src=" in body


def test_points_are_paged_newest_first_and_filtered_by_day(alice, make_vault, settings):
    # a vault of many points: one page at a time, newest first, and the days a user asks for
    from datetime import datetime, timedelta

    from vaults.models import BackupPoint

    vault = make_vault("daily")
    day0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    BackupPoint.objects.bulk_create(
        BackupPoint(
            vault=vault, source_type="nas", source_location="/d", created=day0 + timedelta(days=i), manifest_key=f"m{i}"
        )
        for i in range(120)
    )
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/"
    body = alice.get(url).content.decode()
    assert body.count('<tr id="point-') == settings.POINTS_PER_PAGE
    assert "2026-04-30" in body and "2026-01-01" not in body  # the newest (day 119) first
    assert "Page 1 of 3 · 120 in all" in body
    last = alice.get(url + "?page=3").content.decode()
    assert last.count('<tr id="point-') == 20 and "2026-01-01" in last

    days = alice.get(url + "?created_from=2026-02-01&created_to=2026-02-03").content.decode()
    assert days.count('<tr id="point-') == 3
    assert all(f"2026-02-0{d}" in days for d in (1, 2, 3)) and "2026-01-31" not in days
    assert "All points" in days

    none = alice.get(url + "?created_from=2027-01-01").content.decode()
    assert "No backup point was created in these days." in none

    backwards = alice.get(url + "?created_from=2026-03-01&created_to=2026-02-01")
    assert backwards.status_code == 200
    text = backwards.content.decode()
    assert "The first day must not be after the last." in text
    assert text.count('<tr id="point-') == settings.POINTS_PER_PAGE  # an invalid filter filters nothing


def test_a_date_filter_at_the_end_of_the_calendar_is_no_error(alice, make_vault):
    vault = make_vault("far")
    response = alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/?created_from=0001-01-01&created_to=9999-12-31")
    assert response.status_code == 200
