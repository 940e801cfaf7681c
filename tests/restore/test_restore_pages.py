"""Restore Targets, Create restore job and Restore Jobs through the console; and the restore command."""

import json
import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from restore import services
from restore.models import RestoreJob, RestoreTarget
from vaults import services as vault_services

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def point(make_vault, account, region, tmp_path):
    vault = vault_services.initialize_vault_storage(make_vault("rv").id)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(200_000))
    (src / "readme.txt").write_bytes(b"read me\n")
    source = vault_services.create_backup_source(
        actor=None, account=account, region=region, source_type="nas", name="nas", path=str(src)
    )
    return vault_services.run_backup_job(vault_services.start_backup(actor=None, vault=vault, source=source).pk)


def test_register_a_target_then_restore_from_the_dialog(alice, point, tmp_path, lrs_region, account):
    dest = tmp_path / "dest"
    dest.mkdir()
    url = "/regions/cn-hangzhou/restore-targets/create/"
    bad = alice.post(url, {"name": "nas", "kind": "nas", "location": "relative", "network": "vpn"}, **HTMX)
    assert bad.status_code == 422 and "absolute directory" in bad.content.decode()
    alice.post(url, {"name": "nas", "kind": "nas", "location": str(dest), "network": "vpn"}, **HTMX)
    target = RestoreTarget.objects.get(name="nas")
    services.create_restore_target(
        actor=None, account=account, region=lrs_region, kind="nas", name="west", location=str(dest)
    )
    dialog = alice.get(
        "/regions/cn-hangzhou/restore-jobs/create/", {"vault": point.vault_id, "point": point.id}, **HTMX
    ).content.decode()
    assert f'value="{target.pk}"' in dialog and ">west<" not in dialog  # rule S1: only this region's targets
    response = alice.post(
        "/regions/cn-hangzhou/restore-jobs/create/",
        {
            "vault": point.vault_id,
            "point": point.id,
            "target": target.pk,
            "sub_path": "sub",
            "existing": "fail",
        },
        **HTMX,
    )
    assert response["HX-Redirect"] == "/regions/cn-hangzhou/restore-jobs/"
    job = RestoreJob.objects.get()
    polling = alice.get("/regions/cn-hangzhou/restore-jobs/", HTTP_HX_TARGET="restore-table", **HTMX)
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    services.run_restore_job(job.pk)  # what the worker's task does
    done = alice.get("/regions/cn-hangzhou/restore-jobs/", HTTP_HX_TARGET="restore-table", **HTMX)
    assert done.status_code == 286 and "1 written" in done.content.decode()
    assert (dest / "sub" / "data.bin").exists() and not (dest / "readme.txt").exists()
    assert "Restore" in alice.get(f"/regions/cn-hangzhou/vaults/{point.vault_id}/").content.decode()


def test_another_accounts_vaults_and_points_are_not_offered(alice, make_vault, other_account, tmp_path):
    theirs = make_vault("theirs", acct=other_account)
    body = alice.get("/regions/cn-hangzhou/restore-jobs/create/", {"vault": theirs.id}, **HTMX).content.decode()
    assert "theirs" not in body
    response = alice.post("/regions/cn-hangzhou/restore-jobs/create/", {"vault": theirs.id}, **HTMX)
    assert response.status_code == 422 and not RestoreJob.objects.exists()


def test_restore_command(point, account, tmp_path):
    dest = tmp_path / "cli"
    dest.mkdir()
    out = StringIO()
    call_command(
        "restore",
        "target",
        "create",
        "--account",
        "acme",
        "--region",
        "cn-hangzhou",
        "--kind",
        "nas",
        "--location",
        str(dest),
        "--json",
        stdout=out,
    )
    target = json.loads(out.getvalue())
    out = StringIO()
    call_command(
        "restore",
        "start",
        point.id,
        "--target",
        str(target["id"]),
        "--path",
        "readme.txt",
        "--wait",
        "--json",
        stdout=out,
    )
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded" and result["bytes"] == 8 and result["id"]
    assert (dest / "readme.txt").read_bytes() == b"read me\n"
    (dest / "readme.txt").write_bytes(b"changed since")
    with pytest.raises(CommandError, match="already exist"):
        call_command("restore", "start", point.id, "--target", str(target["id"]), "--wait", stdout=StringIO())
    with pytest.raises(CommandError, match="restores to a"):
        other = services.create_restore_target(
            actor=None, account=account, region=point.vault.region, kind="cpfs", name="cpfs", location=str(dest)
        )
        call_command("restore", "start", point.id, "--target", str(other.pk), stdout=StringIO())
