"""`manage.py vault|kms|seed_demo`: the same services as the console, JSON for scripts."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from console.models import Account, AuditLog
from tests.conftest import ROOT
from vaults.models import KmsKey, Vault


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_json(*args):
    return json.loads(run(*args, "--json"))


def test_create_list_show_delete_round_trip(account, region):
    created = run_json("vault", "create", "--account", "acme", "--region", "cn-hangzhou", "--name", "nightly")
    vault = Vault.objects.get(pk=created["id"])
    assert (created["name"], created["region"], created["type"], created["status"]) == (
        "nightly",
        "cn-hangzhou",
        "general",
        "initializing",
    )
    assert created["encryption"] == "cloud-backup-managed" and created["data_size"] == 0
    listed = run_json("vault", "list", "--account", "acme", "--region", "cn-hangzhou")
    assert [v["id"] for v in listed["vaults"]] == [vault.id]
    shown = run_json("vault", "show", vault.id)
    assert set(shown) >= {"id", "name", "region", "type", "status", "encryption", "data_size", "points"}
    assert shown["points"] == []
    with pytest.raises(CommandError, match="--yes"):
        run("vault", "delete", vault.id)
    assert Vault.objects.filter(pk=vault.pk).exists()
    assert run_json("vault", "delete", vault.id, "--yes") == {"id": vault.id, "deleted": True}
    assert not Vault.objects.filter(pk=vault.pk).exists()


def test_kms_key_and_kms_vault(account, region, lrs_region):
    key = run_json("kms", "create-key", "--account", "acme", "--region", "cn-hangzhou", "--alias", "prod")
    assert KmsKey.objects.get(key_id=key["id"]).region == region
    vault = run_json(
        "vault",
        "create",
        "--account",
        "acme",
        "--region",
        "cn-hangzhou",
        "--name",
        "k",
        "--encryption",
        "kms",
        "--kms-key",
        key["id"],
    )
    assert vault["kms_key"] == key["id"]
    # rule V4: a key of another region is refused on this path too
    with pytest.raises(CommandError, match="kms_key: The KMS key must belong"):
        run(
            "vault",
            "create",
            "--account",
            "acme",
            "--region",
            "us-west-1",
            "--name",
            "k2",
            "--encryption",
            "kms",
            "--kms-key",
            key["id"],
        )
    assert AuditLog.objects.filter(action="create_vault", outcome="refused").count() == 1


def test_unknown_names_are_clear_errors(account):
    with pytest.raises(CommandError, match="No account nobody"):
        run("vault", "list", "--account", "nobody")
    with pytest.raises(CommandError, match="No region mars-1"):
        run("vault", "create", "--account", "acme", "--region", "mars-1", "--name", "x")


def test_seed_demo_is_idempotent(db):
    first = run("seed_demo")
    second = run("seed_demo")
    assert "demo / cloud-backup-demo" in first and "(unchanged)" in second
    demo = Account.objects.get(slug="demo")
    assert demo.memberships.count() == 1 and KmsKey.objects.filter(account=demo).count() == 1


def test_refusal_exits_non_zero_with_one_line_on_stderr(transactional_db, account, region):
    db = connection.settings_dict
    url = (
        f"sqlite:///{db['NAME']}"
        if db["ENGINE"].endswith("sqlite3")
        else f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    env = {**os.environ, "DATABASE_URL": url}
    args = [
        sys.executable,
        "manage.py",
        "vault",
        "create",
        "--account",
        "acme",
        "--region",
        "cn-hangzhou",
        "--name",
        "",
        "--json",
    ]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "CommandError: name: Enter a vault name."
    assert result.stdout == ""
    assert not Vault.objects.exists()
