"""Restore traffic and billing (rule B2), and the usage and charges the console shows (rules B1-B3)."""

import calendar
import json
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from console.models import Region
from console.overview import billing
from console.overview.billing import GB
from replication.models import CrossRegionTraffic, ReplicationPair
from restore import services as restore_services
from restore.models import Existing, Network, RestoreJob
from tests.restore.conftest import KiB, make_target, random_bytes, restore, restore_ok, write
from vaults import services as vault_services
from vaults.models import SourceType, StorageUsage
from vaults.tasks import note_storage_usage_task

DATA = {"one.bin": random_bytes(120 * KiB, 81), "two/two.bin": random_bytes(80 * KiB, 82), "empty": b""}
TOTAL = sum(len(d) for d in DATA.values())


@pytest.fixture
def src(tmp_path):
    for name, data in DATA.items():
        write(tmp_path / "src" / name, data)
    return tmp_path / "src"


def test_restore_from_a_replication_target_vault_is_free(tmp_path, account, point_of, src):
    # rule B2: from a Replication Target vault to a resource of its region: free
    point, point_region = point_of("replica", SourceType.ECS_FILE, path=src)
    (tmp_path / "dest").mkdir()
    job = restore_ok(point, make_target(account, point_region, "ecs-instance", tmp_path / "dest"))
    assert job.is_free is True and job.internet_bytes == 0 and job.bytes_written == TOTAL


def test_restore_from_a_general_vault_is_not_free(tmp_path, account, point_of, src):
    point, point_region = point_of("general", SourceType.ECS_FILE, path=src)
    (tmp_path / "dest").mkdir()
    job = restore_ok(point, make_target(account, point_region, "ecs-instance", tmp_path / "dest"))
    assert job.is_free is False and job.internet_bytes == 0


@pytest.mark.parametrize(
    "source_type,kind", [(SourceType.ON_PREMISES_FILE, "local-server"), (SourceType.ON_PREMISES_NAS, "on-premises-nas")]
)
def test_on_premises_over_the_internet_bills_the_bytes_written(tmp_path, account, point_of, src, source_type, kind):
    # rule B2: to an on-premises target over the Internet, the bytes sent are billed as outbound traffic
    point, point_region = point_of("general", source_type, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, kind, dest, network=Network.INTERNET)
    job = restore_ok(point, target)
    assert job.bytes_written == TOTAL
    assert job.internet_bytes == job.bytes_written == sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert job.report["internet_bytes"] == TOTAL
    # a second run sends nothing (every file already identical), so nothing is billed
    again = restore_ok(point, target, existing=Existing.SKIP)
    assert again.bytes_written == 0 and again.internet_bytes == 0


def test_a_resumed_restore_keeps_what_earlier_attempts_sent_billed(tmp_path, account, point_of, src):
    # rule B2: an attempt that sent part of the data and stopped (its worker stopped; the job was handed back)
    point, point_region = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = make_target(account, point_region, "local-server", dest, network=Network.INTERNET)
    job = restore_services.start_restore(actor=None, point=point, target=target)
    sent_before = 4096  # what the first attempt sent before its worker stopped
    RestoreJob.objects.filter(pk=job.pk).update(bytes_written=sent_before, internet_bytes=sent_before)
    restore_services.run_restore_job(job.pk)
    job.refresh_from_db()
    assert job.status == RestoreJob.Status.SUCCEEDED, job.error
    assert job.internet_bytes == job.bytes_written == sent_before + TOTAL == job.report["internet_bytes"]


def test_on_premises_skipped_files_are_not_billed(tmp_path, account, point_of, src):
    point, point_region = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    write(dest / "one.bin", b"locally changed")
    job = restore_ok(point, make_target(account, point_region, "local-server", dest), existing=Existing.SKIP)
    assert job.internet_bytes == job.bytes_written == TOTAL - len(DATA["one.bin"])


@pytest.mark.parametrize("network", [Network.VPN, Network.LEASED_LINE])
def test_on_premises_over_vpn_or_leased_line_bills_nothing(tmp_path, account, point_of, src, network):
    # rule B2: only Internet traffic is billed
    point, point_region = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    job = restore_ok(point, make_target(account, point_region, "local-server", dest, network=network))
    assert job.bytes_written == TOTAL and job.internet_bytes == 0 and job.report["internet_bytes"] == 0


def test_on_premises_from_a_replica_over_the_internet(tmp_path, account, point_of, src):
    # rule B2: a replica restored to a local server over the Internet sends the bytes, and they are billed
    point, point_region = point_of("replica", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    job = restore_ok(point, make_target(account, point_region, "local-server", dest))
    assert job.is_free is False and job.internet_bytes == TOTAL
    usage = billing.month_usage(account, point_region, billing.parse_month(""))
    assert sum(line.internet_bytes for line in usage.vaults) == TOTAL


def test_bytes_sent_before_a_restore_failed_are_billed(tmp_path, account, point_of, src):
    # rule B2: what reached the on-premises target before a failure was sent all the same
    point, point_region = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    (dest / "two").mkdir(parents=True)
    (dest / "two" / "two.bin").mkdir()  # a directory where the point has a file: the job fails there
    job = restore(point, make_target(account, point_region, "local-server", dest), existing=Existing.OVERWRITE)
    assert job.status == RestoreJob.Status.FAILED and (dest / "one.bin").read_bytes() == DATA["one.bin"]
    assert job.internet_bytes == job.bytes_written >= len(DATA["one.bin"])


# -- rule B3: the Usage & Billing page and the `usage` command -------------------------------------


def expected_charges(account, region):
    """This month's charges computed straight from the recorded usage and the region's prices."""
    days = calendar.monthrange(*timezone.now().timetuple()[:2])[1]
    storage = sum(StorageUsage.objects.filter(account=account, region=region).values_list("peak_bytes", flat=True))
    traffic = sum(CrossRegionTraffic.objects.filter(region=region).values_list("bytes_sent", flat=True))
    restores = RestoreJob.objects.filter(target__region=region, is_free=False)
    internet = sum(restores.values_list("internet_bytes", flat=True))
    return (
        Decimal(storage) / GB * region.storage_price / days,
        Decimal(traffic) / GB * region.replication_price,
        Decimal(internet) / GB * region.internet_price,
    )


def test_usage_page_charges_storage_replication_and_outbound_per_vault_and_day(
    tmp_path, account, region, point_of, src, alice, other_user, client
):
    # rules B1-B3: storage on each day's largest Storage Vault Data Size, traffic on the bytes sent
    # between regions (in the source's region), outbound on a restore over the Internet; prices per region
    Region.objects.filter(pk=region.pk).update(storage_price=3, replication_price=7, internet_price=11)
    region.refresh_from_db()
    general, _ = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    (tmp_path / "dest").mkdir()
    outbound = restore_ok(general, make_target(account, region, "local-server", tmp_path / "dest"))
    replica, replica_region = point_of("replica", SourceType.ECS_FILE, path=src)
    pair = ReplicationPair.objects.get(target_vault=replica.vault)
    assert outbound.internet_bytes == TOTAL and pair.bytes_sent > 0
    assert CrossRegionTraffic.objects.get(pair=pair).region == region  # billed where the source is
    for vault in (general.vault, pair.source_vault, replica.vault):
        vault.refresh_from_db()
        assert StorageUsage.objects.get(vault=vault).peak_bytes == vault.data_size > 0

    usage = billing.month_usage(account, region, billing.parse_month(""))
    storage, traffic, internet = expected_charges(account, region)
    assert abs(usage.total.storage_charge - storage) < Decimal("0.00001")
    assert abs(usage.total.traffic_charge - traffic) < Decimal("0.00001")
    assert abs(usage.total.internet_charge - internet) < Decimal("0.00001")
    by_vault = {line.vault_id: line for line in usage.vaults}
    assert set(by_vault) == {general.vault_id, pair.source_vault_id}  # the target's storage is billed in its region
    assert by_vault[general.vault_id].internet_bytes == TOTAL and by_vault[pair.source_vault_id].traffic_bytes > 0
    today = [line for day, line in usage.days if day == timezone.now().date()][0]
    assert today.total == usage.total.total and len(usage.days) == timezone.now().day

    page = alice.get(reverse("console:usage", args=[region.code]))
    assert page.status_code == 200
    html = page.content.decode()
    assert general.vault.name in html and pair.source_vault.name in html
    assert f"{usage.total.total.quantize(Decimal('0.0001')):,} USD" in html
    assert "per GB-month" in html and "restores from a Replication Target vault into its region are free" in html
    target_page = alice.get(reverse("console:usage", args=[replica_region.code])).content.decode()
    assert replica.vault.name in target_page and pair.source_vault.name not in target_page

    out = StringIO()
    call_command("usage", "--account", account.slug, "--region", region.code, "--json", stdout=out)
    assert json.loads(out.getvalue())["total"]["total"] == str(usage.total.total)

    client.force_login(other_user)  # another account sees none of it
    assert general.vault.name not in client.get(reverse("console:usage", args=[region.code])).content.decode()


def test_storage_is_billed_on_the_day_peak_and_counted_every_day(account, point_of, src):
    point, region = point_of("general", SourceType.ON_PREMISES_FILE, path=src)
    vault = point.vault
    vault.refresh_from_db()
    peak = vault.data_size
    vault_services.delete_point(actor=None, point=point)
    vault.refresh_from_db()
    assert vault.data_size < peak and StorageUsage.objects.get(vault=vault).peak_bytes == peak
    StorageUsage.objects.all().delete()  # a new day, on which nothing changed the vault
    note_storage_usage_task()
    assert StorageUsage.objects.get(vault=vault).peak_bytes == vault.data_size


def test_usage_refuses_a_bad_month_and_pages_between_months(alice, account, region):
    page = alice.get(reverse("console:usage", args=[region.code]), {"month": "2026-13"})
    assert page.status_code == 400 and "is not a month: use YYYY-MM" in page.content.decode()
    page = alice.get(reverse("console:usage", args=[region.code]), {"month": "2024-02"})
    assert page.status_code == 200 and "February 2024" in page.content.decode()
    assert "?month=2024-01" in page.content.decode() and "?month=2024-03" in page.content.decode()
    this_month = alice.get(reverse("console:usage", args=[region.code])).context["usage"]
    assert this_month.next is None and this_month.previous < this_month.month  # no month that has not begun
    assert page.context["usage"].days[0][0] == date(2024, 2, 29)  # every day of a past month, newest first
    with pytest.raises(CommandError, match="not a month"):
        call_command("usage", "--account", account.slug, "--region", region.code, "--month", "soon")


def test_a_renamed_vault_is_billed_under_its_name_now(account, region, make_vault):
    vault = make_vault("before")
    StorageUsage.objects.create(
        vault=vault,
        vault_label=f"before ({vault.id})",
        account=account,
        region=region,
        day=timezone.now().date(),
        peak_bytes=10**9,
    )
    vault_services.update_vault(actor=None, vault=vault, name="after")
    [line] = billing.month_usage(account, region, billing.parse_month("")).vaults
    assert line.label == f"after ({vault.id})" and line.vault_id == vault.id and line.storage_bytes == 10**9


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "2026-13", "soon"])
def test_a_month_outside_the_calendar_is_a_clear_refusal(alice, account, region, month):
    page = alice.get(reverse("console:usage", args=[region.code]) + f"?month={month}")
    assert page.status_code == 400 and "month" in page.content.decode().lower()
    with pytest.raises(CommandError, match="month|calendar"):
        call_command("usage", "--account", account.slug, "--region", region.code, "--month", month)
