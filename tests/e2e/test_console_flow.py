"""The Storage Vaults console in a real browser: log in, create a KMS vault through the htmx
dialog, watch the worker make it Normal, switch regions, delete it with typed confirmation.

Headless Chromium (Playwright, sync API) against `live_server`, with a real Celery worker
process. The console runs under a strict CSP (no inline scripts); any CSP report in the
browser console fails the test.

`test_readme_screenshots` renders the README's pages; with SAVE_SCREENSHOTS=1 it rewrites
the PNGs in docs/screenshots/.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_until
from vaults import services
from vaults.dataplane import objectstore
from vaults.models import EncryptionMethod, Vault, VaultStatus, VaultType

from .conftest import csp_violations, log_in, worker_paused

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LIST_URL = re.compile(r"/regions/cn-hangzhou/vaults/$")
US_LIST_URL = re.compile(r"/regions/us-west-1/vaults/$")
DETAIL_URL = re.compile(r"/regions/cn-hangzhou/vaults/(v-[0-9a-f]+)/$")


def switch_region(page, region_name):
    selector = page.get_by_test_id("region-selector")
    selector.locator("summary").click()
    selector.get_by_role("link", name=region_name).click()


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)  # regions: the seeded_regions fixture
def test_create_watch_switch_region_and_delete_a_kms_vault(
    celery_worker_process, page, console_messages, user, account, region, lrs_region
):
    hz_key = services.create_kms_key(actor=None, account=account, region=region, alias="hz-key")
    us_key = services.create_kms_key(actor=None, account=account, region=lrs_region, alias="us-key")
    status_polls = []
    create_posts = []
    page.on("request", lambda r: "/status/" in r.url and status_polls.append(r.url))
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/create/") and create_posts.append(r.url))

    # 1. Log in; the console opens on the Storage Vaults page of the first region.
    log_in(page, "alice", "pw-alice")
    expect(page).to_have_url(LIST_URL)
    expect(page.get_by_role("heading", name="Storage Vaults")).to_be_visible()
    csp = page.request.get(page.url).headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, csp  # the CSP check below means something only with a CSP

    # 2. The empty state's "Create vault" opens the htmx dialog.
    empty = page.get_by_test_id("empty-vaults")
    expect(empty).to_contain_text("There are no vaults in China (Hangzhou) yet.")
    empty.get_by_role("link", name="Create vault").click()
    dialog = page.get_by_role("dialog", name="Create vault")
    expect(dialog).to_be_visible()
    expect(page).to_have_url(LIST_URL)  # a dialog over the list, not a page of its own
    expect(dialog.get_by_label("KMS KeyId")).to_have_count(0)

    # KMS as the encryption method loads the KMS KeyId field: keys of this region only (rule V4).
    with page.expect_response(lambda r: "/kms-key-field/" in r.url) as kms_field:
        dialog.get_by_label("Vault Encryption Method").select_option(label="KMS")
    assert kms_field.value.status == 200
    key_select = dialog.get_by_label("KMS KeyId")
    expect(key_select).to_be_visible()
    offered = key_select.locator("option").all_inner_texts()
    assert any(hz_key.key_id in o and "hz-key" in o for o in offered), offered
    assert not any(us_key.key_id in o or "us-key" in o for o in offered), offered
    key_select.select_option(value=hz_key.key_id)

    # An empty name: the browser's own check stops the form (the input is `required`)...
    name = dialog.get_by_label("Vault Name")
    dialog.get_by_role("button", name="OK").click()
    assert name.evaluate("el => el.validity.valueMissing")
    # ...and a blank one reaches the server: 422, the dialog re-rendered with the field's error.
    name.fill("   ")
    with page.expect_response(lambda r: r.request.method == "POST" and "/create/" in r.url) as created:
        dialog.get_by_role("button", name="OK").click()
    assert created.value.status == 422
    assert len(create_posts) == 1, create_posts  # the empty name never left the browser
    dialog = page.get_by_role("dialog", name="Create vault")
    expect(dialog.locator(".field.has-error")).to_contain_text("Vault Name")
    expect(dialog.get_by_role("alert")).to_have_text("This field is required.")
    expect(dialog.get_by_label("Vault Encryption Method")).to_have_value(EncryptionMethod.KMS)
    expect(dialog.get_by_label("KMS KeyId")).to_have_value(hz_key.key_id)  # the choices survive the error
    assert not Vault.objects.exists()

    # A valid name: the vault is created and the browser goes to its detail page.
    dialog.get_by_label("Vault Name").fill("hz-ecs-daily")
    with worker_paused(celery_worker_process):  # so that Initializing can be seen before the worker acts
        dialog.get_by_role("button", name="OK").click()
        expect(page).to_have_url(DETAIL_URL)
        vault = Vault.objects.get(account=account, region=region, name="hz-ecs-daily")
        assert page.url.endswith(f"/vaults/{vault.id}/")
        assert vault.encryption_method == EncryptionMethod.KMS and vault.kms_key == hz_key
        expect(page.get_by_role("heading", name="hz-ecs-daily")).to_be_visible()
        badge = page.locator(f"#status-{vault.id}")
        expect(badge).to_have_text("Initializing")

    # 3. The worker creates the storage area; htmx polling turns the badge to Normal, then stops.
    expect(badge).to_have_text("Normal", timeout=30_000)
    assert status_polls, "the badge changed without polling"
    polls = len(status_polls)
    page.wait_for_timeout(4_500)  # two polling periods
    assert len(status_polls) == polls, f"polling went on after Normal: {status_polls[polls:]}"
    vault.refresh_from_db()
    assert vault.status == VaultStatus.NORMAL
    # what depends on the status changed with it, without a reload by hand
    expect(page.get_by_role("link", name="Back up now")).to_be_visible()
    store = objectstore.region_store(region)
    assert store.list_keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]

    # 4. The region selector, from the Storage Vaults page, shows US (Silicon Valley): not this vault.
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Storage Vaults").click()
    expect(page).to_have_url(LIST_URL)
    expect(page.locator(f"#vault-{vault.id}")).to_contain_text("Normal")
    switch_region(page, "US (Silicon Valley)")
    expect(page).to_have_url(US_LIST_URL)
    expect(page.get_by_test_id("region-selector").locator("summary")).to_contain_text("us-west-1")
    expect(page.get_by_test_id("empty-vaults")).to_contain_text("There are no vaults in US (Silicon Valley) yet.")
    expect(page.get_by_text("hz-ecs-daily")).to_have_count(0)

    # 5. Back in China (Hangzhou), delete the vault from its detail page (rule V7).
    switch_region(page, "China (Hangzhou)")
    expect(page).to_have_url(LIST_URL)
    page.get_by_test_id("vault-table").get_by_role("link", name="hz-ecs-daily").click()
    expect(page).to_have_url(DETAIL_URL)
    page.locator(".page-head").get_by_role("link", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete vault hz-ecs-daily")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Type hz-ecs-daily to confirm.")

    # A wrong name: refused in the dialog, nothing removed.
    dialog.get_by_label("Type the vault's name to confirm").fill("hz-ecs")
    with page.expect_response(lambda r: r.request.method == "POST" and "/delete/" in r.url) as deleted:
        dialog.get_by_role("button", name="Delete").click()
    assert deleted.value.status == 422
    dialog = page.get_by_role("dialog", name="Delete vault hz-ecs-daily")
    expect(dialog.get_by_role("alert")).to_have_text("Type the vault's name, hz-ecs-daily, to confirm.")
    expect(page).to_have_url(DETAIL_URL)
    assert Vault.objects.filter(pk=vault.pk).exists()
    assert store.list_keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]

    # The right name: the vault and its data are gone, the browser is back on the list.
    dialog.get_by_label("Type the vault's name to confirm").fill("hz-ecs-daily")
    dialog.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(LIST_URL)
    expect(page.get_by_test_id("empty-vaults")).to_be_visible()
    assert not Vault.objects.filter(pk=vault.pk).exists()
    assert store.list_keys(vault.storage_prefix) == []
    assert not (store.root / vault.storage_prefix).exists()

    assert csp_violations(console_messages) == [], console_messages
    assert not [m for m in console_messages if m.startswith("pageerror")], console_messages


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)  # regions: the seeded_regions fixture
def test_readme_screenshots(celery_worker_process, page, console_messages, user, account, region, make_vault, tmp_path):
    """The pages of the README's screenshots render (1280x800); SAVE_SCREENSHOTS=1 writes them to docs/."""
    out = SCREENSHOTS if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path
    key = services.create_kms_key(actor=None, account=account, region=region, alias="finance-key")
    make_vault("prod-ecs-daily", description="ECS file backups of the production web tier")
    make_vault("finance-db", vault_type=VaultType.DATABASE, encryption_method=EncryptionMethod.KMS, kms_key=key)
    make_vault("nas-archive", vault_type=VaultType.ARCHIVE)
    assert wait_until(lambda: not Vault.objects.filter(status=VaultStatus.INITIALIZING).exists(), timeout=30)
    assert set(Vault.objects.values_list("status", flat=True)) == {VaultStatus.NORMAL}
    out.mkdir(parents=True, exist_ok=True)

    log_in(page, "alice", "pw-alice")
    expect(page).to_have_url(LIST_URL)
    expect(page.get_by_test_id("vault-table").locator(".badge.normal")).to_have_count(3)
    page.screenshot(path=out / "storage-vaults.png")

    page.locator(".page-head").get_by_role("link", name="Create vault").click()
    dialog = page.get_by_role("dialog", name="Create vault")
    dialog.get_by_label("Vault Name").fill("hz-ecs-daily")
    dialog.get_by_label("Vault Description").fill("Daily ECS file backups, kept 30 days")
    dialog.get_by_label("Vault Encryption Method").select_option(label="KMS")
    dialog.get_by_label("KMS KeyId").select_option(value=key.key_id)
    page.evaluate("document.activeElement.blur()")
    page.mouse.move(0, 0)
    page.screenshot(path=out / "create-vault.png")
    page.keyboard.press("Escape")

    # Usage & Billing, after a backup of a few MiB into one vault (rule B3)
    data = tmp_path / "web"
    data.mkdir()
    for i in range(4):
        (data / f"part-{i}.bin").write_bytes(os.urandom(3 << 20))
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="web-tier", path=str(data)
    )
    vault = Vault.objects.get(name="prod-ecs-daily")
    services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    page.goto(page.url.replace("/vaults/", "/usage/"))
    usage = page.locator("#usage-vaults")
    expect(usage.get_by_role("link", name=re.compile("prod-ecs-daily"))).to_be_visible()
    expect(page.get_by_text("Charges this month")).to_be_visible()
    page.screenshot(path=out / "usage-billing.png")
    names = ("storage-vaults.png", "create-vault.png", "usage-billing.png")
    assert all((out / name).stat().st_size > 10_000 for name in names)

    assert csp_violations(console_messages) == [], console_messages
