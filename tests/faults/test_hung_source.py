"""A source whose file system stops answering (a hung NFS or FUSE mount): every read of a tenant's file has a
time limit, so the backup fails naming the file instead of holding its worker for ever; no point is made.

A hung mount cannot be made on this machine, so the file is replaced, as it is opened, by the read end of a
pipe whose writer never writes: a read that blocks exactly as one on a dead file system does. That is the one
fault injected here; the backup, its reads and the timer are the real ones.
"""

import os
import time

import pytest

from tests.vaults.conftest import make_source, run_backup, write
from vaults import services
from vaults.dataplane import backup as engine
from vaults.dataplane import tenantfs
from vaults.models import BackupJob, BackupPoint

LIMIT = 0.5


@pytest.fixture
def hung_file(monkeypatch):
    """Opening `hung.bin` gives a descriptor whose reads never answer."""
    real_open = engine.open_regular
    pipes = []

    def open_regular(dir_fd, name):
        if name != "hung.bin":
            return real_open(dir_fd, name)
        read_end, write_end = os.pipe()
        pipes.append(write_end)  # kept open and silent: a read waits for ever
        return read_end, os.fstat(read_end)

    monkeypatch.setattr(engine, "open_regular", open_regular)
    monkeypatch.setattr(tenantfs, "READ_TIME_LIMIT", LIMIT)
    yield
    for fd in pipes:
        os.close(fd)


def test_a_read_that_never_answers_fails_the_backup_naming_the_file(hung_file, tmp_path, account, region, make_vault):
    vault = services.initialize_vault_storage(make_vault("hung").id)
    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    write(src / "hung.bin", b"on a file system that stopped answering\n")
    write(src / "z.txt", b"last\n")
    started = time.monotonic()
    job = run_backup(vault, make_source(account, region, "ecs-file", path=src))
    took = time.monotonic() - started
    assert job.status == BackupJob.Status.FAILED
    assert (
        job.error
        == f"hung.bin: no answer from the file system for {LIMIT:g} s while reading it; the backup stopped there."
    )
    assert took < LIMIT + 10
    assert not BackupPoint.objects.filter(vault=vault).exists()
    print(f"hung source: the backup failed naming the file after {took:.1f} s (read time limit {LIMIT} s)")
