"""Select Replication Target Vault in a real browser, clicking only: a free Replication Target vault
made beforehand in us-west-1 is chosen in the panel and the pair starts, with KMS vaults (each with a
key of its own region) and with Cloud Backup-managed ones. The panel's Select mode never shows the
encryption method, so the submission must not need it (it answered 422 with no message before).
"""

import re

import pytest
from playwright.sync_api import expect

from replication.models import ReplicationPair
from tests.conftest import wait_until
from vaults import services
from vaults.models import Vault, VaultStatus, VaultType

from .conftest import csp_violations, log_in
from .test_replication_flow import rerender, settled

HZ_LIST_URL = re.compile(r"/regions/cn-hangzhou/vaults/$")


def normal(vault):
    services.initialize_vault_storage(vault.id)  # the worker may have done it already: harmless
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status == VaultStatus.NORMAL, timeout=30)
    return Vault.objects.get(pk=vault.pk)


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("encryption", ["kms", "cloud-backup-managed"])
def test_select_a_free_target_vault_and_replicate(
    encryption, celery_worker_process, page, console_messages, user, account, region, lrs_region, make_vault
):
    # rules R1-R5 through the panel's Select mode
    keys = {}
    if encryption == "kms":
        keys = {
            "source": services.create_kms_key(actor=None, account=account, region=region, alias="hz-key"),
            "target": services.create_kms_key(actor=None, account=account, region=lrs_region, alias="us-key"),
        }
    source = normal(make_vault("hz-source", encryption_method=encryption, kms_key=keys.get("source")))
    target = normal(
        make_vault(
            "us-free-target",
            reg=lrs_region,
            vault_type=VaultType.REPLICATION_TARGET,
            encryption_method=encryption,
            kms_key=keys.get("target"),
        )
    )

    log_in(page, "alice", "pw-alice")
    expect(page).to_have_url(HZ_LIST_URL)
    row = page.locator(f"#vault-{source.id}")
    row.get_by_role("link", name="Configure backup vault replication").click()
    dialog = page.get_by_role("dialog", name="Initiate Backup Vault Replication")
    expect(dialog).to_be_visible()
    settled(page)
    expect(dialog.get_by_role("radio", name="Select Replication Target Vault")).to_be_checked()
    expect(dialog.get_by_label("Vault Encryption Method")).to_have_count(0)  # Select mode does not show it

    region_select = dialog.get_by_label("Destination Region")
    rerender(page, lambda: region_select.select_option(label="US (Silicon Valley) (us-west-1)"), "/replication/?")
    dialog.get_by_label("Replication Target Vault", exact=True).select_option(value=target.id)
    with page.expect_response(lambda r: r.request.method == "POST" and "/replication/" in r.url) as initiated:
        dialog.get_by_role("button", name="OK").click()
    assert initiated.value.status == 200, initiated.value.text()
    expect(page).to_have_url(HZ_LIST_URL)
    expect(page.get_by_role("dialog")).to_have_count(0)

    pair = ReplicationPair.objects.get(source_vault=source)
    assert pair.target_vault_id == target.id
    cell = page.locator(f"#replication-{source.id}")
    expect(cell).to_contain_text("→ us-free-target")
    expect(cell.locator(".badge")).to_have_text("Running", timeout=30_000)
    assert csp_violations(console_messages) == [], console_messages
    assert not [m for m in console_messages if m.startswith("pageerror")], console_messages


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_refusal_of_a_field_the_mode_does_not_show_is_still_said(page, user, account, region, make_vault):
    # Select mode with no target chosen: the dialog says what is missing instead of answering silently
    source = make_vault("hz-source-2")
    Vault.objects.filter(pk=source.pk).update(status=VaultStatus.NORMAL)
    log_in(page, "alice", "pw-alice")
    page.locator(f"#vault-{source.id}").get_by_role("link", name="Configure backup vault replication").click()
    dialog = page.get_by_role("dialog", name="Initiate Backup Vault Replication")
    settled(page)
    rerender(
        page,
        lambda: dialog.get_by_label("Destination Region").select_option(label="US (Silicon Valley) (us-west-1)"),
        "/replication/?",
    )
    with page.expect_response(lambda r: r.request.method == "POST" and "/replication/" in r.url) as refused:
        dialog.get_by_role("button", name="OK").click()
    assert refused.value.status == 422
    expect(dialog.get_by_role("alert").first).to_be_visible()
    assert not ReplicationPair.objects.exists()
