"""Vault page actions: backup lock (typed confirmation), automatic archiving, verification report."""

import pytest

from tests.conftest import wait_until
from vaults import services
from vaults.dataplane import objectstore
from vaults.models import BackupPoint, Pack, Tier, VerifyRun
from vaults.services.verify import VERIFY

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def vault(make_vault):
    return services.initialize_vault_storage(make_vault("acts").id)


@pytest.fixture
def point(vault, account, region, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.csv").write_bytes(b"quarter,revenue\n" * 5000)
    source = services.create_backup_source(
        actor=None, account=account, region=region, source_type="nas", name="nas", path=str(tmp_path / "d")
    )
    return services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)


def test_enable_backup_lock_needs_the_typed_name(alice, vault):
    # rule L1
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/lock/"
    assert "cannot be turned off" in alice.get(url, **HTMX).content.decode()
    assert alice.post(url, {"confirmation": "nope"}, **HTMX).status_code == 422
    vault.refresh_from_db()
    assert not vault.backup_lock
    assert alice.post(url, {"confirmation": vault.name}, **HTMX)["HX-Redirect"].endswith(f"{vault.id}/")
    vault.refresh_from_db()
    assert vault.backup_lock
    assert "Points cannot be deleted" in alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/").content.decode()


def test_automatic_archiving_setting(alice, vault):
    # rule P5
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/archiving/"
    alice.post(url, {"archive_after_days": "30"})
    vault.refresh_from_db()
    assert vault.archive_after_days == 30
    alice.post(url, {"archive_after_days": "0"})
    vault.refresh_from_db()
    assert vault.archive_after_days == 30
    alice.post(url, {"archive_after_days": ""})
    vault.refresh_from_db()
    assert vault.archive_after_days is None


def test_bring_back_an_archived_point_from_the_page(alice, vault, point):
    services.archive_point(point)
    assert "Bring back" in alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/").content.decode()
    alice.post(f"/regions/cn-hangzhou/vaults/{vault.id}/points/{point.id}/bring-back/")
    assert BackupPoint.objects.get(pk=point.pk).tier == Tier.STANDARD


def test_verify_report_names_the_damaged_file(alice, vault, point, region):
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/verify/"
    alice.post(url)
    run = VerifyRun.objects.get()
    polling = alice.get(url + "report/", **HTMX)
    assert polling.status_code == 200 and 'hx-trigger="every 2s"' in polling.content.decode()
    services.run_verify(run.pk)  # what the worker's task does
    clean = alice.get(url + "report/", **HTMX)
    assert clean.status_code == 286 and "No problems" in clean.content.decode()
    store = objectstore.region_store(region)
    pack = Pack.objects.get(vault=vault)
    data = bytearray(store.get(pack.key))
    data[len(data) // 2] ^= 0xFF
    store.put(pack.key, bytes(data))
    alice.post(url)
    services.run_verify(VerifyRun.objects.first().pk)
    body = alice.get(f"/regions/cn-hangzhou/vaults/{vault.id}/").content.decode()
    assert "Problems found" in body and "report.csv" in body and point.id in body


@pytest.mark.worker
def test_verification_runs_in_the_worker(celery_worker_process, alice, vault, point):
    alice.post(f"/regions/cn-hangzhou/vaults/{vault.id}/verify/")
    assert wait_until(lambda: not VerifyRun.objects.get().is_active, timeout=60)
    run = VerifyRun.objects.get()
    assert run.verdict == "No problems" and run.report["files"] == 1 and run.report["bytes"] == 80000


def test_a_verify_run_whose_message_was_lost_is_queued_again(vault, point, monkeypatch):
    # a broker restarted without persistence loses queued messages; the periodic reaper sends them again
    from datetime import timedelta

    from django.utils import timezone

    from console import jobs
    from console.jobs import QUEUED_STALE

    sent = []
    monkeypatch.setattr(jobs, "enqueue", lambda kind, pk: sent.append(pk))  # records what reaches the broker
    run = services.start_verify(actor=None, vault=vault)
    assert jobs.requeue(VERIFY) == []  # queued a moment ago: it may just be waiting
    VerifyRun.objects.filter(pk=run.pk).update(created=timezone.now() - QUEUED_STALE - timedelta(seconds=1))
    assert jobs.requeue(VERIFY) == [run.pk] and sent[-1] == run.pk
    assert jobs.requeue(VERIFY) == []  # once per period
    services.run_verify(run.pk)  # the worker that gets the message
    assert VerifyRun.objects.get(pk=run.pk).verdict == "No problems"


def test_a_running_verification_shows_its_progress(alice, vault, point, monkeypatch):
    from vaults.services import verify

    url = f"/regions/cn-hangzhou/vaults/{vault.id}/verify/"
    alice.post(url)
    seen = []
    read_back = verify.verify_vault

    def watched(vault, on_progress):
        def peek(report):  # the page, polled while the worker reads the vault back
            on_progress(report)
            seen.append(alice.get(url + "report/", **HTMX).content.decode())

        return read_back(vault, on_progress=peek)

    monkeypatch.setattr(verify, "SAVE_EVERY", 0)
    monkeypatch.setattr(verify, "verify_vault", watched)
    services.run_verify(VerifyRun.objects.get().pk)
    assert seen and "100%: point 1 of 1" in seen[-1] and "78.1\xa0KB of 78.1\xa0KB" in seen[-1]
    assert "No problems" in alice.get(url + "report/", **HTMX).content.decode()


def test_a_verification_whose_worker_died_fails_or_is_taken_over(vault, point):
    from datetime import timedelta

    from django.utils import timezone

    from console import jobs
    from console.jobs import HEARTBEAT_STALE
    from console.models import AuditLog

    run = services.start_verify(actor=None, vault=vault)
    VerifyRun.objects.filter(pk=run.pk).update(status=VerifyRun.Status.RUNNING, heartbeat=timezone.now())
    assert services.run_verify(run.pk) is None  # another worker has it (a fresh heartbeat)
    assert jobs.reap(VERIFY) == []
    dead = timezone.now() - HEARTBEAT_STALE - timedelta(seconds=1)
    VerifyRun.objects.filter(pk=run.pk).update(heartbeat=dead)
    assert services.run_verify(run.pk).verdict == "No problems"  # its message again: taken over
    VerifyRun.objects.filter(pk=run.pk).update(status=VerifyRun.Status.RUNNING, heartbeat=dead, finished=None)
    assert jobs.reap(VERIFY) == [run.pk]
    run.refresh_from_db()
    assert run.status == VerifyRun.Status.FAILED and "Verify the vault again" in run.error
    assert AuditLog.objects.filter(action="verify_vault", outcome="failed", detail__reason="worker lost").exists()
    assert services.run_verify(run.pk) is None  # a late message of a failed run does nothing
