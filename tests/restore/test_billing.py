"""Restore traffic and billing (rule B2)."""

import pytest

from restore.models import Existing, Network
from tests.restore.conftest import KiB, make_target, random_bytes, restore_ok, write
from vaults.models import SourceType

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
    # rule B2: a replica restored to its own region's local server over the Internet still sends the bytes
    point, point_region = point_of("replica", SourceType.ON_PREMISES_FILE, path=src)
    dest = tmp_path / "dest"
    dest.mkdir()
    job = restore_ok(point, make_target(account, point_region, "local-server", dest))
    assert job.is_free is True and job.internet_bytes == TOTAL
