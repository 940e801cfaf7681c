"""`manage.py backup --wait --json` and `manage.py verify --json`: the same services, JSON for scripts.

The commands run in-process through call_command; their JSON is checked against the rows and the data.
"""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.vaults.conftest import (
    KiB,
    assert_point_matches,
    build_tree,
    random_bytes,
    read_point,
    snapshot,
    write,
)
from vaults.models import BackupJob, BackupPoint, BackupSource, SourceType

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]


def run_json(*args):
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def file_bytes(expected):
    return sum(len(e["data"]) for e in expected.values() if e["type"] == "file")


def test_backup_wait_json_then_verify_json(tmp_path, account, region, normal_vault):
    # rule P1 through the command line: `backup --wait --json` reports the new point's id, status and bytes;
    # `verify --json` reads every chunk of every point back
    vault = normal_vault()
    root = build_tree(tmp_path / "src", seed=60)
    expected = snapshot(root)

    first = run_json("backup", "--vault", vault.id, "--wait", str(root))

    point = BackupPoint.objects.get(pk=first["id"])
    assert point.vault_id == vault.id and point.source_type == SourceType.ON_PREMISES_FILE
    assert first["status"] == BackupJob.Status.SUCCEEDED
    assert first["bytes"] == file_bytes(expected) == point.size
    assert first["files"] == 6 and first["warnings"] == []
    assert first["stored_bytes"] == BackupJob.objects.get(pk=first["job"]).bytes_stored > 0
    assert_point_matches(point, expected)

    second = run_json("backup", "--vault", vault.id, "--wait", str(root))
    assert second["id"] != first["id"] and second["stored_bytes"] == 0  # rule V6, through the command
    assert BackupSource.objects.filter(account=account, path=str(root)).count() == 1

    report = run_json("verify", vault.id)
    assert set(report) >= {"vault", "points", "files", "chunks", "bytes", "problems"}
    chunks = 0
    for p in BackupPoint.objects.filter(vault=vault):
        _, entries, _ = read_point(p)
        chunks += sum(len(e.get("chunks", [])) for e in entries.values())
    assert (report["vault"], report["points"], report["files"]) == (vault.id, 2, 12)
    assert report["bytes"] == 2 * file_bytes(expected)
    assert report["chunks"] == chunks
    assert report["problems"] == []

    out = StringIO()
    call_command("verify", vault.id, stdout=out)  # plain text, exit 0
    assert out.getvalue().startswith("2 points, 12 files")


def test_backup_command_of_an_export_and_of_a_bucket(tmp_path, account, region, normal_vault):
    # rules P1, P2 through the command line: --source-type for an export file, and OSS with --bucket
    vault = normal_vault()
    export = write(tmp_path / "hana" / "full.export", random_bytes(700 * KiB, 61))
    result = run_json("backup", "--vault", vault.id, "--source-type", "sap-hana", "--wait", str(export))
    point = BackupPoint.objects.get(pk=result["id"])
    assert point.source_type == SourceType.SAP_HANA and result["bytes"] == 700 * KiB
    assert read_point(point)[2] == {"full.export": export.read_bytes()}

    bucket_root = Path(settings.OBJECT_STORE["root"]) / "oss" / region.code / "photos"
    write(bucket_root / "2026" / "a.jpg", b"\xff\xd8jpeg")
    write(bucket_root / "2025" / "b.jpg", b"old")
    run_json("bucket", "assign", "--account", account.slug, "--region", region.code, "--bucket", "photos")  # rule T2
    result = run_json("backup", "--vault", vault.id, "--source-type", "oss", "--bucket", "photos", "--wait", "2026/")
    _, entries, data = read_point(BackupPoint.objects.get(pk=result["id"]))
    assert data == {"2026/a.jpg": b"\xff\xd8jpeg"} and entries["2026/a.jpg"]["content_type"] == "image/jpeg"


def test_failed_backup_command_exits_non_zero_with_the_reason(tmp_path, account, region, normal_vault):
    # rule P3 through the command line: a failed job is a CommandError naming the path; no point
    vault = normal_vault()
    missing = tmp_path / "missing"
    with pytest.raises(CommandError, match=str(missing)):
        run_json("backup", "--vault", vault.id, "--wait", str(missing))
    assert not BackupPoint.objects.exists()
    assert BackupJob.objects.get().status == BackupJob.Status.FAILED
