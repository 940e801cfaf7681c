"""A double click on "Start backup" in a real browser makes one backup job: the button is disabled while
its request is in flight, and the service refuses a second job of the same source and vault anyway."""

import re

import pytest
from playwright.sync_api import expect

from tests.vaults.conftest import make_source, write
from vaults import services
from vaults.models import BackupJob

from .conftest import csp_violations, log_in
from .test_replication_flow import settled


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_start_backup_makes_one_job(
    monkeypatch, page, console_messages, user, account, region, make_vault, tmp_path
):
    queued = []
    monkeypatch.setattr("vaults.services.backups._enqueue_backup", queued.append)  # no worker: the job waits
    vault = services.initialize_vault_storage(make_vault("clicked").id)
    write(tmp_path / "src" / "a.txt", b"a\n")
    make_source(account, region, "ecs-file", name="twice", path=tmp_path / "src")
    log_in(page, "alice", "pw-alice")
    page.goto(f"/regions/{region.code}/vaults/{vault.id}/")
    page.get_by_role("link", name="Back up now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    settled(page)
    dialog.get_by_role("button", name="Start backup").dblclick()
    expect(page).to_have_url(re.compile(r"/backup-jobs/$"))
    page.wait_for_timeout(500)  # a second request, had one been sent, has been answered by now
    assert BackupJob.objects.filter(vault=vault).count() == 1
    assert len(queued) == 1
    assert csp_violations(console_messages) == [], console_messages
    assert not [m for m in console_messages if m.startswith("pageerror")], console_messages


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_storage_vaults_row_follows_its_vault_out_of_initializing(
    monkeypatch, page, console_messages, user, account, region, make_vault
):
    # the row's actions depend on the status: they update with it, without a reload
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)
    vault = make_vault("fresh")
    log_in(page, "alice", "pw-alice")
    row = page.locator(f"#vault-{vault.id}")
    expect(row.locator(f"#status-{vault.id}")).to_have_text("Initializing")
    expect(row.get_by_role("link", name="Configure backup vault replication")).to_have_count(0)
    services.initialize_vault_storage(vault.id)  # what the worker's task does
    expect(row.locator(f"#status-{vault.id}")).to_have_text("Normal", timeout=10_000)
    expect(row.get_by_role("link", name="Configure backup vault replication")).to_be_visible()
    assert csp_violations(console_messages) == [], console_messages
    assert not [m for m in console_messages if m.startswith("pageerror")], console_messages
