"""The historical sync of a single large point, watched in a real browser: the Storage Vaults row shows its
bytes and percent moving while the point is copied, not "0 % · 0/1 points" until it lands."""

import os
import re
import threading

import pytest
from django.db import connection
from playwright.sync_api import expect

from replication import engine
from replication import services as replication_services
from replication.models import ReplicationPair
from tests.vaults.conftest import make_source
from vaults import services

from .conftest import log_in


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_single_large_point_moves_while_it_is_copied(
    monkeypatch, no_queue, page, user, account, region, lrs_region, make_vault, tmp_path
):
    vault = services.initialize_vault_storage(make_vault("large").id)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "image.bin").write_bytes(os.urandom(8 << 20))
    source = make_source(account, region, "ecs-file", path=tmp_path / "src")
    point = services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    monkeypatch.setattr(replication_services, "enqueue_sync", lambda pair_id: None)  # copied here, below
    pair = replication_services.start_replication(
        actor=None,
        source_vault=vault,
        destination_region=lrs_region,
        create={"name": "large-dr", "description": "", "resource_group": None},
    )
    # packs of 256 KiB and every step written, so the copy has many steps; it halts half-way until released
    monkeypatch.setattr(engine, "PACK_TARGET", 256 << 10)
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 0)
    half_way, release = threading.Event(), threading.Event()
    add = engine.PointProgress.add

    def add_then_wait_half_way(progress, rows):
        add(progress, rows)
        if progress.raw_done * 2 >= progress.raw_total and not half_way.is_set():
            half_way.set()
            release.wait(60)

    monkeypatch.setattr(engine.PointProgress, "add", add_then_wait_half_way)
    failures = []

    def sync():
        try:
            engine.sync_pair(pair.id)
        except Exception as exc:  # shown by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    copier = threading.Thread(target=sync)
    copier.start()
    try:
        assert half_way.wait(60)
        log_in(page, "alice", "pw-alice")
        cell = page.locator(f"#replication-{vault.id}")
        expect(cell).to_contain_text(re.compile(r"\b([4-9]\d)% · 0/1 points"))
        expect(cell).not_to_contain_text("0 bytes of")
    finally:
        release.set()
        copier.join(60)
    assert failures == []
    expect(page.locator(f"#replication-{vault.id}")).to_contain_text("Running", timeout=10_000)
    pair = ReplicationPair.objects.get(pk=pair.pk)
    assert pair.history_bytes_done == point.size and pair.history_bytes_in_flight == 0
