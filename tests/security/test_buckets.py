"""Rule T2: an OSS bucket belongs to one account; nobody else can name it, an unowned one nobody can.

On both kinds of store: local bucket directories (the embedded default) and buckets on moto's S3
server, where an account may also register a bucket with an access key of its own.
"""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from restore.models import RestoreJob, RestoreTarget
from tests.restore.conftest import create_bucket, local_bucket_dir, restore, s3_raw_client
from tests.vaults.conftest import owned_bucket, read_point, run_backup, write
from vaults import services
from vaults.dataplane.keys import open_credential
from vaults.models import BackupJob, BackupSource, OssBucket


@pytest.fixture
def vault(make_vault):
    v = make_vault("bucket-vault")
    services.initialize_vault_storage(v.id)
    v.refresh_from_db()
    return v


def source_of(account, region, bucket, prefix=""):
    return services.create_backup_source(
        actor=None, account=account, region=region, source_type="oss", name="s-" + bucket, bucket=bucket, prefix=prefix
    )


def target_of(account, region, bucket):
    from restore import services as restore_services

    return restore_services.create_restore_target(
        actor=None, account=account, region=region, kind="oss-bucket", name="t-" + bucket, location=bucket
    )


def test_an_unowned_bucket_cannot_be_a_source_or_a_target(account, region):
    name = create_bucket("local", region)
    for make in (source_of, target_of):
        with pytest.raises(ValidationError, match="not one of this account's buckets"):
            make(account, region, name)
    assert not BackupSource.objects.exists() and not RestoreTarget.objects.exists()


def test_another_accounts_bucket_cannot_be_read_or_written(account, other_account, region, tmp_path):
    name = create_bucket("local", region)
    write(local_bucket_dir(region, name) / "theirs.txt", b"globex data")
    services.assign_bucket(actor=None, account=other_account, region=region, name=name)
    for make in (source_of, target_of):
        with pytest.raises(ValidationError, match="not one of this account's buckets"):
            make(account, region, name)
    with pytest.raises(ValidationError, match="another account"):
        services.assign_bucket(actor=None, account=account, region=region, name=name)
    with pytest.raises(CommandError, match="another account"):
        call_command("bucket", "assign", "--account", account.slug, "--region", region.code, "--bucket", name)
    assert OssBucket.objects.get(name=name).account == other_account


def test_a_bucket_given_away_after_registration_is_refused_at_run(account, other_account, region, vault):
    # rule T2 at each run: the source was registered while the bucket was acme's
    name = owned_bucket(account, region, create_bucket("local", region))
    write(local_bucket_dir(region, name) / "a.txt", b"data")
    source = source_of(account, region, name)
    OssBucket.objects.filter(name=name).update(account=other_account)
    with pytest.raises(ValidationError, match="not one of this account's buckets"):
        run_backup(vault, source)
    assert not BackupJob.objects.filter(status=BackupJob.Status.SUCCEEDED).exists()


def test_the_operator_assigns_a_bucket_and_the_account_uses_it(account, region, vault, tmp_path):
    out = StringIO()
    call_command(
        "bucket", "assign", "--account", account.slug, "--region", region.code, "--bucket", "ours-1", stdout=out
    )
    assert "belongs to acme" in out.getvalue()
    assert local_bucket_dir(region, "ours-1").is_dir()  # a local bucket is created
    write(local_bucket_dir(region, "ours-1") / "k" / "a.txt", b"ours")
    job = run_backup(vault, source_of(account, region, "ours-1", prefix="k/"))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert read_point(job.point)[2] == {"k/a.txt": b"ours"}


def test_an_account_registers_its_own_bucket_with_its_own_key(s3_stores, account, other_account, region, vault):
    # moto's server accepts any key pair; a wrong endpoint or bucket is what a bad key looks like here
    name = create_bucket("s3", region)
    s3_raw_client().put_object(Bucket=name, Key="k/a.txt", Body=b"from my bucket")
    with pytest.raises(ValidationError, match="cannot reach"):
        services.register_bucket(
            actor=None,
            account=account,
            region=region,
            name="no-such-bucket-x1",
            access_key_id="AK",
            secret_access_key="s",
        )
    owned = services.register_bucket(
        actor=None, account=account, region=region, name=name, access_key_id="AKIDTENANT", secret_access_key="tenant-s3"
    )
    assert b"tenant-s3" not in bytes(owned.sealed_secret)  # sealed, never in plain text
    assert open_credential(owned.sealed_secret, f"{region.code}/{name}") == "tenant-s3"
    with pytest.raises(ValidationError, match="already registered"):
        services.register_bucket(
            actor=None, account=other_account, region=region, name=name, access_key_id="AK2", secret_access_key="s2"
        )
    job = run_backup(vault, source_of(account, region, name, prefix="k/"))
    assert job.status == BackupJob.Status.SUCCEEDED, job.error
    assert read_point(job.point)[2] == {"k/a.txt": b"from my bucket"}
    target = target_of(account, region, name)
    done = restore(job.point, target, existing="overwrite")
    assert done.status == RestoreJob.Status.SUCCEEDED, done.error


def test_the_regions_store_bucket_is_never_assigned(s3_stores, account, region):
    from vaults.dataplane.objectstore import store_config

    store_bucket = store_config(region)[1]
    with pytest.raises(ValidationError, match="own data"):
        services.assign_bucket(actor=None, account=account, region=region, name=store_bucket)
    assert not OssBucket.objects.exists()


HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_backup_sources_page_lists_only_the_accounts_buckets(alice, account, other_account, region):
    owned_bucket(account, region, "ours-b")
    owned_bucket(other_account, region, "theirs-b")
    body = alice.get("/regions/cn-hangzhou/backup-sources/").content.decode()
    assert "ours-b" in body and "theirs-b" not in body and "Register bucket" in body


def test_registering_a_bucket_in_the_console(s3_stores, alice, account, other_account, region):
    url = "/regions/cn-hangzhou/backup-sources/buckets/register/"
    assert 'type="password"' in alice.get(url, **HTMX).content.decode()
    name = create_bucket("s3", region)
    theirs = create_bucket("s3", region)
    owned_bucket(other_account, region, theirs)
    refused = alice.post(url, {"bucket": theirs, "access_key_id": "AK", "secret_access_key": "s"}, **HTMX)
    assert refused.status_code == 422 and "already registered" in refused.content.decode()
    missing = alice.post(url, {"bucket": "nobody-has-this", "access_key_id": "AK", "secret_access_key": "s"}, **HTMX)
    assert missing.status_code == 422 and "cannot reach" in missing.content.decode()
    assert OssBucket.objects.filter(account=account).count() == 0
    done = alice.post(url, {"bucket": name, "access_key_id": "AKMINE", "secret_access_key": "my-secret"}, **HTMX)
    assert done.status_code == 200 and done.headers["HX-Redirect"].endswith("/backup-sources/")
    owned = OssBucket.objects.get(account=account, name=name)
    assert owned.access_key_id == "AKMINE" and b"my-secret" not in bytes(owned.sealed_secret)
    assert "my-secret" not in alice.get("/regions/cn-hangzhou/backup-sources/").content.decode()


def test_the_embedded_store_takes_no_registration(alice, account, region):
    url = "/regions/cn-hangzhou/backup-sources/buckets/register/"
    name = create_bucket("local", region)
    refused = alice.post(url, {"bucket": name, "access_key_id": "AK", "secret_access_key": "s"}, **HTMX)
    assert refused.status_code == 422 and "assigned by an operator" in refused.content.decode()
    assert not OssBucket.objects.exists()
