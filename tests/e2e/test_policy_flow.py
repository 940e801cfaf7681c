"""The Policy Center in a real browser, clicking only (rules C1, C2, C4): create a nightly policy with long-term
retention, an archive rule and a replication rule to us-west-1, bound to two sources; press Run now; the real
worker backs both up and copies the points to the destination region, where their copies are listed."""

import re

import pytest
from playwright.sync_api import expect

from replication.models import ReplicatedPoint, ReplicationPair
from tests.conftest import wait_until
from vaults import services
from vaults.models import BackupJob, BackupPoint, Policy, SourceType, Vault, VaultStatus

from .conftest import csp_violations, log_in

CENTER_URL = re.compile(r"/regions/cn-hangzhou/policies/$")


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_nightly_policy_with_a_replication_rule_from_the_browser(
    celery_worker_process, page, console_messages, user, account, region, lrs_region, make_vault, tmp_path
):
    vault = make_vault("nightly-vault")
    services.initialize_vault_storage(vault.id)
    assert wait_until(lambda: Vault.objects.get(pk=vault.pk).status == VaultStatus.NORMAL, timeout=30)
    for name in ("docs", "photos"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_bytes(f"{name} to keep\n".encode() * 1000)
        services.create_backup_source(
            actor=None, account=account, region=region, source_type=SourceType.ECS_FILE, name=name,
            path=str(tmp_path / name),
        )  # fmt: skip

    log_in(page, "alice", "pw-alice")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Policy Center").click()
    expect(page).to_have_url(CENTER_URL)
    page.get_by_role("link", name="Create policy").click()
    dialog = page.get_by_role("dialog", name="Create policy")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Policy name").fill("nightly")
    dialog.get_by_label("Back up into vault").select_option(value=vault.id)
    dialog.get_by_label("At (HH:MM, comma-separated)").fill("02:00")
    dialog.get_by_label("Time zone").fill("Asia/Shanghai")
    dialog.get_by_label("Retention (days; empty keeps forever)").fill("30")
    dialog.get_by_label("... of each month for (months)").fill("12")
    dialog.get_by_label("Archive after (days; empty: never)").fill("7")
    dialog.get_by_label("Enable backup vault replication to").select_option(value="us-west-1")
    dialog.get_by_label("New Replication Target vault's name").fill("nightly-dr")
    dialog.get_by_label("docs").check()
    dialog.get_by_label("photos").check()
    with page.expect_response(lambda r: r.request.method == "POST" and "/policies/create/" in r.url) as created:
        dialog.get_by_role("button", name="OK").click()
    assert created.value.status == 200, created.value.text()
    expect(page).to_have_url(CENTER_URL)
    policy = Policy.objects.get(name="nightly")
    row = page.locator(f"#policy-{policy.pk}")
    expect(row).to_contain_text("every day at 02:00 (Asia/Shanghai)")
    expect(row).to_contain_text("docs, photos")
    pair = ReplicationPair.objects.get(source_vault=vault)
    assert pair.by_policy == policy.pk and pair.target_vault.region == lrs_region

    row.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(CENTER_URL)
    expect(page.locator(".messages")).to_contain_text("nightly: 2 backup jobs started.")
    assert wait_until(lambda: BackupJob.objects.filter(policy_run__policy=policy, status="succeeded").count() == 2, 60)
    points = BackupPoint.objects.filter(vault=vault)
    assert points.count() == 2 and all(p.by_policy == policy.pk for p in points)
    # the worker's sync copies both points (a committed point triggers it); the copies are listed in us-west-1
    assert wait_until(
        lambda: ReplicatedPoint.objects.filter(pair=pair, state=ReplicatedPoint.State.COMMITTED).count() == 2, 90
    ), ReplicationPair.objects.get(pk=pair.pk).error
    page.goto(f"/regions/us-west-1/vaults/{pair.target_vault_id}/")
    for copy in ReplicatedPoint.objects.filter(pair=pair):
        expect(page.get_by_text(copy.target_point_id)).to_be_visible()
    assert csp_violations(console_messages) == [], console_messages
