"""Cross-region replication in a real browser: configure it from the Storage Vaults page of
cn-hangzhou, watch the worker bring it to Running, follow the peer link to the Replication
Target vault in us-west-1, stop the replication with typed confirmation, then restore the
replicated point in us-west-1 and compare the restored files with the originals.

Headless Chromium (Playwright, sync API) against `live_server`, with a real Celery worker
process that runs the vault initializations, the historical sync and the restore job. Any CSP
report or uncaught page error in the browser fails the test.
"""

import re

import pytest
from playwright.sync_api import expect

from replication.models import ReplicatedPoint, ReplicationPair
from restore.models import OnDamage, RestoreJob, RestoreTarget, TargetKind
from tests.conftest import wait_until
from vaults import services
from vaults.models import BackupJob, BackupPoint, SourceType, Vault, VaultStatus, VaultType

from .conftest import csp_violations, log_in

HZ_LIST_URL = re.compile(r"/regions/cn-hangzhou/vaults/$")
US_LIST_URL = re.compile(r"/regions/us-west-1/vaults/$")
US_TARGETS_URL = re.compile(r"/regions/us-west-1/restore-targets/$")
US_JOBS_URL = re.compile(r"/regions/us-west-1/restore-jobs/$")

SOURCE_NAME = "hz-nas-daily"
TARGET_NAME = "us-nas-replica"
FILES = {
    "report.txt": b"quarterly figures\n" * 4000,
    "docs/plan.md": b"# Cross-region plan\n\n" + b"replicate, then restore\n" * 500,
    "docs/deep/blob.bin": bytes((i * 7 + 3) % 251 for i in range(300_000)),
    "empty.txt": b"",
}


def write_tree(root):
    for rel, data in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def files_under(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def back_up_once(vault, source):
    """One committed point, run here; the worker's copy of the task finds the job claimed or done."""
    job = services.start_backup(actor=None, vault=vault, source=source)
    services.run_backup_job(job.pk)
    assert wait_until(lambda: not BackupJob.objects.get(pk=job.pk).is_active, timeout=30)
    job.refresh_from_db()
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    return BackupPoint.objects.get(pk=job.point_id)


def rerender(page, action, url_part):
    """Change a field whose panel re-renders itself (htmx GET), and wait until htmx has processed
    the new panel: its controls only get their hx- listeners after the settle delay (20 ms), and
    a change made before that would send no request at all."""
    with page.expect_response(lambda r: r.request.method == "GET" and url_part in r.url) as response:
        action()
    assert response.value.status == 200, response.value.text()
    settled(page)


def settled(page):
    """htmx has swapped in and processed (hx- listeners attached) everything it was loading."""
    expect(page.locator(".htmx-request, .htmx-added, .htmx-settling")).to_have_count(0)


def requests_to(page, fragment):
    seen = []
    page.on("request", lambda r: fragment in r.url and seen.append(r.url))
    return seen


def assert_polling_stopped(page, seen, what):
    before = len(seen)
    page.wait_for_timeout(2_500)  # longer than one polling period (2 s)
    assert len(seen) == before, f"{what} polling went on: {seen[before:]}"


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)  # regions: the seeded_regions fixture
def test_replicate_follow_stop_and_restore_the_replica(
    celery_worker_process, page, console_messages, user, account, region, lrs_region, make_vault, tmp_path
):
    # 1. A Normal General Backup vault of cn-hangzhou holding one point of a NAS file system.
    vault = make_vault(SOURCE_NAME)
    services.initialize_vault_storage(vault.id)  # the worker may have done it already: harmless
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status == VaultStatus.NORMAL, timeout=30)
    vault = Vault.objects.select_related("region", "account").get(pk=vault.pk)
    assert vault.vault_type == VaultType.GENERAL
    original = write_tree(tmp_path / "nas-export")
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type=SourceType.NAS, name="nas", path=str(original)
    )
    point = back_up_once(vault, source)
    assert point.files == len(FILES)
    progress_polls = requests_to(page, "/replication/progress/")
    restore_polls = requests_to(page, "/restore-jobs/?page=")

    # 2. Log in; Storage Vaults of cn-hangzhou: Configure backup vault replication on the vault's row.
    log_in(page, "alice", "pw-alice")
    expect(page).to_have_url(HZ_LIST_URL)
    row = page.locator(f"#vault-{vault.id}")
    expect(row).to_contain_text("Not replicated")
    row.get_by_role("link", name="Configure backup vault replication").click()
    dialog = page.get_by_role("dialog", name="Initiate Backup Vault Replication")
    expect(dialog).to_be_visible()
    settled(page)
    expect(page).to_have_url(HZ_LIST_URL)  # a dialog over the list

    # Create Replication Target Vault: the panel re-renders with the new vault's fields.
    rerender(page, dialog.get_by_role("radio", name="Create Replication Target Vault").click, "/replication/?")
    expect(dialog.get_by_role("radio", name="Create Replication Target Vault")).to_be_checked()
    expect(dialog.get_by_label("Vault Name")).to_be_visible()

    # Destination Region: never the source's own region.
    region_select = dialog.get_by_label("Destination Region")
    offered = region_select.locator("option").all_inner_texts()
    assert "US (Silicon Valley) (us-west-1)" in offered, offered
    assert not any("China (Hangzhou)" in o or "cn-hangzhou" in o for o in offered), offered
    rerender(page, lambda: region_select.select_option(label="US (Silicon Valley) (us-west-1)"), "/replication/?")
    expect(dialog.get_by_label("Destination Region")).to_have_value("us-west-1")
    expect(dialog.get_by_role("radio", name="Create Replication Target Vault")).to_be_checked()

    dialog.get_by_label("Vault Name").fill(TARGET_NAME)
    with page.expect_response(lambda r: r.request.method == "POST" and "/replication/" in r.url) as initiated:
        dialog.get_by_role("button", name="OK").click()
    assert initiated.value.status == 200, initiated.value.text()
    expect(page).to_have_url(HZ_LIST_URL)
    expect(page.get_by_role("dialog")).to_have_count(0)
    pair = ReplicationPair.objects.get(source_vault=vault)
    target = Vault.objects.get(pk=pair.target_vault_id)
    assert (target.name, target.region_id, target.vault_type) == (
        TARGET_NAME,
        lrs_region.pk,
        VaultType.REPLICATION_TARGET,
    )

    cell = page.locator(f"#replication-{vault.id}")
    expect(cell).to_contain_text(f"→ {TARGET_NAME}")
    expect(cell).to_contain_text("US (Silicon Valley)")
    expect(cell.locator(".badge")).to_have_text("Running", timeout=30_000)
    assert progress_polls, "the replication cell reached Running without polling"
    assert_polling_stopped(page, progress_polls, "replication progress")
    pair.refresh_from_db()
    assert pair.state == ReplicationPair.State.RUNNING and pair.error == ""
    expect(row.get_by_role("link", name="Stop backup vault replication")).to_be_visible()

    # 3. The peer link opens the destination region's Storage Vaults, where the target points back.
    cell.get_by_role("link", name=TARGET_NAME).click()
    expect(page).to_have_url(US_LIST_URL)
    target_row = page.locator(f"#vault-{target.id}")
    expect(target_row.locator("td").nth(1)).to_have_text("Replication Target")
    target_cell = page.locator(f"#replication-{target.id}")
    expect(target_cell).to_contain_text(f"← {SOURCE_NAME}")
    expect(target_cell).to_contain_text("China (Hangzhou)")
    expect(target_cell.locator(".badge")).to_have_text("Running")
    expect(target_row.get_by_role("link", name="Stop backup vault replication")).to_have_count(0)

    # 4. Back in cn-hangzhou (the source's peer link), stop the replication with typed confirmation.
    target_cell.get_by_role("link", name=SOURCE_NAME).click()
    expect(page).to_have_url(HZ_LIST_URL)
    row.get_by_role("link", name="Stop backup vault replication").click()
    dialog = page.get_by_role("dialog", name="Stop backup vault replication")
    expect(dialog).to_be_visible()
    settled(page)
    expect(dialog).to_contain_text("cannot be resumed")
    expect(dialog).to_contain_text(f"Type {SOURCE_NAME} to confirm.")
    dialog.get_by_label("Type the source vault's name to confirm").fill(SOURCE_NAME)
    with page.expect_response(lambda r: r.request.method == "POST" and "/replication/stop/" in r.url) as stopped:
        dialog.get_by_role("button", name="Stop backup vault replication").click()
    assert stopped.value.status == 200, stopped.value.text()
    expect(page).to_have_url(HZ_LIST_URL)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(cell.locator(".badge")).to_have_text("Stopped")
    expect(row.get_by_role("link", name="Stop backup vault replication")).to_have_count(0)
    pair.refresh_from_db()
    assert pair.state == ReplicationPair.State.STOPPED
    replica = ReplicatedPoint.objects.get(pair=pair, source_point_id=point.id, state=ReplicatedPoint.State.COMMITTED)
    replica_point = replica.target_point
    assert replica_point.vault_id == target.id and replica_point.size == point.size

    # 5. In us-west-1, register a NAS restore target, then restore the replicated point to it.
    cell.get_by_role("link", name=TARGET_NAME).click()
    expect(page).to_have_url(US_LIST_URL)
    expect(page.locator(f"#replication-{target.id}")).to_contain_text("standalone vault")
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="Restore Targets").click()
    expect(page).to_have_url(US_TARGETS_URL)
    page.get_by_role("link", name="Register target").click()
    dialog = page.get_by_role("dialog", name="Register restore target")
    expect(dialog).to_be_visible()
    settled(page)
    restored = tmp_path / "nas-restore"
    restored.mkdir()
    dialog.get_by_label("Name").fill("us-nas")
    dialog.get_by_label("Kind of resource").select_option(label="NAS file system")
    dialog.get_by_label("Directory or bucket").fill(str(restored))
    dialog.get_by_role("button", name="OK").click()
    expect(page).to_have_url(US_TARGETS_URL)
    expect(page.get_by_test_id("target-table")).to_contain_text("us-nas")
    restore_target = RestoreTarget.objects.get(account=account, region=lrs_region, name="us-nas")
    assert restore_target.kind == TargetKind.NAS and restore_target.location == str(restored)

    nav.get_by_role("link", name="Restore Jobs").click()
    expect(page).to_have_url(US_JOBS_URL)
    page.get_by_role("link", name="Create restore job").click()
    dialog = page.get_by_role("dialog", name="Create restore job")
    expect(dialog).to_be_visible()
    settled(page)
    vault_select = dialog.get_by_label("Source vault")
    rerender(
        page, lambda: vault_select.select_option(label=f"{TARGET_NAME} (Replication Target)"), "/restore-jobs/create/?"
    )
    point_select = dialog.get_by_label("Backup point")
    expect(point_select.locator("option")).to_have_count(2)  # "Select a point" and the replica
    rerender(page, lambda: point_select.select_option(value=replica_point.id), "/restore-jobs/create/?")
    expect(dialog.get_by_label("Backup point")).to_have_value(replica_point.id)
    dialog.get_by_label("Restore target").select_option(label="us-nas (NAS file system)")
    expect(dialog.get_by_label("If backup data is damaged")).to_have_value("fail")  # the default
    dialog.get_by_label("If backup data is damaged").select_option(label=OnDamage.INTACT.label)
    with page.expect_response(lambda r: r.request.method == "POST" and "/restore-jobs/create/" in r.url) as started:
        dialog.get_by_role("button", name="Start restore").click()
    assert started.value.status == 200, started.value.text()
    expect(page).to_have_url(US_JOBS_URL)
    job = RestoreJob.objects.get(point=replica_point, target=restore_target)
    job_row = page.locator(f"#restore-{job.pk}")
    expect(job_row.locator(".badge")).to_have_text("Succeeded", timeout=30_000)
    expect(job_row).to_contain_text("free: replication target into its own region")
    assert_polling_stopped(page, restore_polls, "restore table")
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert job.on_damage == OnDamage.INTACT and job.report["files_damaged"] == 0
    assert files_under(restored) == files_under(original) == FILES

    assert csp_violations(console_messages) == [], console_messages
    assert not [m for m in console_messages if m.startswith("pageerror")], console_messages
