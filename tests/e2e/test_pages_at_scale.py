"""In a real browser, clicking only: a vault of many points is read a page at a time and by day, an old
point is restored from its row, and a disabled region's vaults stay reachable from the region selector."""

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from console.models import Region
from console.services import save_region
from vaults import services
from vaults.models import BackupPoint

from .conftest import log_in

DAY0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def daily_points(vault, days):
    BackupPoint.objects.bulk_create(
        BackupPoint(
            vault=vault,
            source_type="nas",
            source_location="/srv/daily",
            created=DAY0 + timedelta(days=i),
            size=1000 + i,
            manifest_key=f"{vault.storage_prefix}manifests/{i}",
        )
        for i in range(days)
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_vault_of_many_points_is_read_a_page_at_a_time_and_by_day(page, user, make_vault, region):
    vault = services.initialize_vault_storage(make_vault("daily").id)
    daily_points(vault, 120)
    log_in(page, "alice", "pw-alice")
    page.get_by_role("link", name="daily").click()
    rows = page.get_by_test_id("point-table").locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("2026-04-30")  # the newest first
    expect(page.get_by_text("Page 1 of 3 · 120 in all")).to_be_visible()
    page.get_by_role("link", name="Next ›").click()
    expect(page.get_by_text("Page 2 of 3 · 120 in all")).to_be_visible()
    expect(rows.first).to_contain_text("2026-03-11")

    page.get_by_label("Created from").fill("2026-01-02")
    page.get_by_label("to", exact=True).fill("2026-01-04")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("2026-01-04")

    # an old point is restored from its row: the dialog offers it though it lists only the newest
    rows.last.get_by_role("link", name="Restore").click()
    dialog = page.get_by_role("dialog")
    old = BackupPoint.objects.get(vault=vault, created=DAY0 + timedelta(days=1))
    expect(dialog.get_by_label("Backup point")).to_have_value(old.id)
    expect(dialog.get_by_text("The newest 100 of 120 points")).to_be_visible()

    page.goto(f"/regions/{region.code}/vaults/{vault.id}/")
    page.get_by_label("Created from").fill("2027-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("No backup point was created in these days.")).to_be_visible()
    page.get_by_role("link", name="All points").click()
    expect(rows).to_have_count(50)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_disabled_regions_vaults_stay_reachable_and_say_why_nothing_starts(
    page, user, make_vault, region, lrs_region
):
    vault = services.initialize_vault_storage(make_vault("last-copy").id)
    daily_points(vault, 3)
    region.is_enabled = False
    save_region(actor=None, region=region)
    log_in(page, "alice", "pw-alice")
    page.goto(f"/regions/{lrs_region.code}/vaults/")
    page.get_by_test_id("region-selector").locator("summary").click()
    page.get_by_role("link", name=f"{region.name} {region.code} (disabled)").click()
    expect(page.get_by_test_id("region-disabled")).to_contain_text("disabled by the operator")
    expect(page.get_by_role("button", name="Create vault")).to_be_disabled()
    page.get_by_role("link", name="last-copy").click()
    expect(page.get_by_role("button", name="Back up now")).to_be_disabled()
    expect(page.get_by_test_id("point-table").locator("tbody tr")).to_have_count(3)
    page.get_by_test_id("point-table").get_by_role("link", name="Restore").first.click()
    expect(page.get_by_role("dialog").get_by_role("button", name="Start restore")).to_be_visible()
    assert Region.objects.get(pk=region.pk).is_enabled is False
