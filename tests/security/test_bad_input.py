"""Bad input, generated: paths, prefixes and bucket names typed into the console's forms and the commands.

Every example either registers exactly what was asked inside the account's own area or is refused
with a message (422 in the console, a one-line error on the command line) and changes nothing; no
example may give a server error. The figure is printed at the end (`pytest -s tests/security`).
"""

import os

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restore.models import RestoreTarget
from vaults.models import BackupSource, OssBucket

EXAMPLES = {"run": 0, "server_errors": 0, "changed_on_refusal": 0}
HTMX = {"HTTP_HX_REQUEST": "true"}
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

segment = st.sampled_from(["..", ".", "", "a", "b c", "ü", "\u202e", "x" * 300, "\x00", "%2e%2e", "~", "-"])
tenant_paths = st.one_of(
    st.text(max_size=80),
    st.lists(segment, max_size=6).map("/".join),
    st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["/", "/proc/self/environ", "/etc/shadow", "/dev/zero", "../../..", "/tmp/../etc"]),
)
bucket_names = st.one_of(st.text(max_size=70), st.sampled_from(["demo-b", "..", "a/b", "UPPER", "x" * 64, "ab"]))


@pytest.fixture(autouse=True, scope="session")
def figure():  # session: printed once, after every test of this file, however pytest orders them
    yield
    print(
        f"\nbad input: {EXAMPLES['run']} examples run, {EXAMPLES['server_errors']} server errors, "
        f"{EXAMPLES['changed_on_refusal']} changes on refusal"
    )


def state():
    return (
        list(BackupSource.objects.values_list("pk", flat=True)),
        list(RestoreTarget.objects.values_list("pk", flat=True)),
        OssBucket.objects.count(),
    )


def inside_home(value, home):
    real = os.path.realpath(value)
    return real == str(home) or real.startswith(str(home) + os.sep)


def check_post(client, url, data, home, created_path=None):
    """One example through the console: a clear answer, and a refusal that changes nothing."""
    before = state()
    response = client.post(url, data, **HTMX)
    EXAMPLES["run"] += 1
    if response.status_code >= 500:
        EXAMPLES["server_errors"] += 1
    assert response.status_code < 500, data
    after = state()
    if response.status_code == 422:
        EXAMPLES["changed_on_refusal"] += after != before
        assert after == before
    elif after != before and created_path is not None:  # accepted: only what the account owns
        assert inside_home(created_path(), home), data


@SETTINGS
@given(path=tenant_paths)
def test_backup_source_paths_from_the_console(alice, tmp_path, path):
    url = "/regions/cn-hangzhou/backup-sources/create/"
    check_post(
        alice,
        url,
        {"name": "s", "source_type": "ecs-file", "path": path},
        tmp_path,
        lambda: BackupSource.objects.latest("pk").path,
    )
    BackupSource.objects.all().delete()


@SETTINGS
@given(path=tenant_paths)
def test_restore_target_paths_from_the_console(alice, tmp_path, path):
    check_post(
        alice,
        "/regions/cn-hangzhou/restore-targets/create/",
        {"name": "t", "kind": "ecs-instance", "location": path, "network": "internet"},
        tmp_path,
        lambda: RestoreTarget.objects.latest("pk").location,
    )
    RestoreTarget.objects.all().delete()


@SETTINGS
@given(bucket=bucket_names, prefix=tenant_paths)
def test_bucket_names_and_prefixes_from_the_console(alice, account, region, bucket, prefix):
    from tests.vaults.conftest import owned_bucket

    owned_bucket(account, region, "demo-b")
    for url, data in (
        ("/regions/cn-hangzhou/backup-sources/create/", {"name": "s", "source_type": "oss", "bucket": bucket}),
        ("/regions/cn-hangzhou/restore-targets/create/", {"name": "t", "kind": "oss-bucket", "location": bucket}),
    ):
        check_post(alice, url, {**data, "prefix": prefix, "network": "internet"}, None)
        for model in (BackupSource, RestoreTarget):
            for row in model.objects.all():  # accepted: the account's own bucket, a prefix without escape
                assert (row.bucket if model is BackupSource else row.location) == "demo-b"
                assert ".." not in row.prefix.split("/") and not row.prefix.startswith("/")
            model.objects.all().delete()


@SETTINGS
@given(path=tenant_paths, bucket=bucket_names, prefix=tenant_paths)
def test_the_same_input_on_the_command_line(account, region, tmp_path, path, bucket, prefix):
    for args in (
        ["restore", "target", "create", "--kind", "local-server", "--location", path, "--name", "c1"],
        [
            "restore",
            "target",
            "create",
            "--kind",
            "oss-bucket",
            "--location",
            bucket,
            "--prefix",
            prefix,
            "--name",
            "c2",
        ],
        ["bucket", "assign", "--bucket", bucket],
    ):
        before = state()
        EXAMPLES["run"] += 1
        try:
            call_command(*args, "--account", account.slug, "--region", region.code, stdout=open(os.devnull, "w"))  # noqa: SIM115
        except CommandError:
            EXAMPLES["changed_on_refusal"] += state() != before
            assert state() == before
        except Exception:
            EXAMPLES["server_errors"] += 1
            raise
    RestoreTarget.objects.all().delete()
    OssBucket.objects.all().delete()
