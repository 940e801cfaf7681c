"""Deduplication and Storage Vault Data Size (rule V6): identical data is stored once per vault, and
the vault's data size is the bytes its objects really occupy in the region's store.

Stored bytes are measured on the job (`bytes_stored`: new pack bytes the backup wrote) and on the
store itself (object sizes listed with the raw means of the backend).
"""

import os
import shutil

import pytest

from tests.vaults.conftest import (
    KiB,
    MiB,
    RawStore,
    assert_point_matches,
    backup_ok,
    build_tree,
    make_source,
    random_bytes,
    snapshot,
    stored_bytes_of,
    write,
)
from vaults import services
from vaults.dataplane.chunkstore import CHUNK_MAX
from vaults.dataplane.readback import verify_vault
from vaults.models import BackupPoint, Vault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]

SPOT = 64 * KiB


def packs_of(vault):
    return set(RawStore(vault.region).keys(vault.storage_prefix + "packs/"))


def data_size(vault):
    return Vault.objects.get(pk=vault.pk).data_size


def test_second_backup_of_unchanged_data_stores_nothing(tmp_path, account, region, normal_vault):
    # rule V6: a second backup of the same, unchanged source adds no pack bytes, only its manifest
    root = build_tree(tmp_path / "src", seed=5)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)
    first = backup_ok(vault, source)
    assert first.bytes_stored > 3 * MiB  # the random 3 MiB file cannot be compressed away
    packs, size = packs_of(vault), data_size(vault)

    second = backup_ok(vault, source)

    assert second.bytes_stored == 0 and second.point.stored_bytes == 0
    assert packs_of(vault) == packs
    assert data_size(vault) == size + second.point.manifest_size
    assert_point_matches(second.point, snapshot(root))


def test_touched_files_with_the_same_content_store_nothing(tmp_path, account, region, normal_vault):
    # rule V6: files whose metadata changed (so they are read again) but whose bytes did not are deduplicated
    # by chunk, not by file metadata
    root = build_tree(tmp_path / "src", seed=6)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)
    backup_ok(vault, source)
    for path in ("big.bin", "notes.txt", "a/b/c/deep.dat"):
        os.utime(root / path, ns=(1_800_000_000_000_000_000, 1_800_000_000_000_000_000))
    job = backup_ok(vault, source)
    assert job.bytes_stored == 0
    assert_point_matches(job.point, snapshot(root))


def test_second_source_with_the_same_files_stores_nothing(tmp_path, account, region, normal_vault):
    # rule V6: dedup spans sources of a vault: a copy of the same files elsewhere adds no pack bytes
    root = build_tree(tmp_path / "src", seed=7)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    vault = normal_vault()
    backup_ok(vault, make_source(account, region, "ecs-file", path=root))
    packs = packs_of(vault)

    job = backup_ok(vault, make_source(account, region, "on-premises-nas", path=copy))

    assert job.bytes_stored == 0
    assert packs_of(vault) == packs
    assert_point_matches(job.point, snapshot(copy))
    assert verify_vault(vault)["problems"] == []


def test_scattered_small_changes_store_only_the_chunks_around_them(tmp_path, account, region, normal_vault):
    # rule V6: after changing a few 64 KiB spots of a large random file, the next backup stores only the
    # chunks containing those spots. Content-defined chunks are CHUNK_MIN..CHUNK_MAX long, so each spot
    # rewrites the chunk(s) around it: the design bound is spots * CHUNK_MAX, far below the file size.
    size = 8 * MiB
    big = write(tmp_path / "src" / "big.bin", random_bytes(size, 42))
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=tmp_path / "src")
    first = backup_ok(vault, source)
    before = snapshot(tmp_path / "src")

    offsets = [700 * KiB, 3 * MiB + 123, 5 * MiB + 4567, 7 * MiB + 100 * KiB]
    data = bytearray(big.read_bytes())
    for i, offset in enumerate(offsets):
        data[offset : offset + SPOT] = random_bytes(SPOT, 1000 + i)
    big.write_bytes(bytes(data))
    second = backup_ok(vault, source)

    changed = len(offsets) * SPOT
    print(
        f"\ndedup: file {size} B, first backup stored {first.bytes_stored} B; {len(offsets)} spots x {SPOT} B "
        f"changed ({changed} B) -> second backup stored {second.bytes_stored} B "
        f"({second.bytes_stored / changed:.2f}x the changed bytes, {second.bytes_stored / size:.1%} of the file)"
    )
    assert second.bytes_stored >= changed  # random bytes: every changed spot is really stored
    assert second.bytes_stored <= len(offsets) * CHUNK_MAX
    assert second.bytes_stored < size / 8
    assert_point_matches(second.point, snapshot(tmp_path / "src"))
    # the first point still reads back the bytes of before
    assert_point_matches(first.point, before)


def test_data_size_is_the_bytes_in_the_store(store_backend, tmp_path, account, region, normal_vault):
    # rule V6: Storage Vault Data Size equals the real bytes of the vault's packs and manifests in its
    # region's store, after backups, after a deduplicated backup, and after deletions
    root = build_tree(tmp_path / "src", seed=8)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)
    assert data_size(vault) == stored_bytes_of(vault) == 0

    first = backup_ok(vault, source).point
    assert data_size(vault) == stored_bytes_of(vault) > 3 * MiB

    write(root / "added.bin", random_bytes(512 * KiB, 9))
    second = backup_ok(vault, source).point
    assert data_size(vault) == stored_bytes_of(vault)

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    third = backup_ok(vault, make_source(account, region, "nas", path=copy)).point
    assert data_size(vault) == stored_bytes_of(vault)

    for point in (second, first, third):
        services.delete_point(actor=None, point=point)
        assert data_size(vault) == stored_bytes_of(vault)
    assert not BackupPoint.objects.filter(vault=vault).exists()
    assert data_size(vault) == 0
    assert RawStore(region).keys(vault.storage_prefix) == [vault.storage_prefix + "vault.json"]


def test_file_rewritten_with_same_size_and_mtime_is_read_again(tmp_path, account, region, normal_vault):
    # rule P1: a point is a complete copy of the source at its moment; the shortcut that reuses an unchanged
    # file's chunks must not keep stale bytes when content changed but size and mtime were put back
    root = build_tree(tmp_path / "src", seed=10)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)
    backup_ok(vault, source)
    target = root / "a" / "b" / "c" / "deep.dat"
    st = os.stat(target)
    with open(target, "r+b") as f:  # in place: same inode, same size
        f.seek(1000)
        f.write(b"NEW BYTES IN THE MIDDLE")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    job = backup_ok(vault, source)

    assert job.bytes_stored > 0
    assert_point_matches(job.point, snapshot(root))


def test_damaged_previous_point_costs_a_full_read_not_wrong_data(tmp_path, account, region, normal_vault):
    # rules P1, V6: when the previous point's manifest cannot be read, the next backup reads every file
    # again (and still deduplicates by chunk) instead of failing or trusting nothing
    root = build_tree(tmp_path / "src", seed=11)
    vault = normal_vault()
    source = make_source(account, region, "ecs-file", path=root)
    first = backup_ok(vault, source).point
    raw = RawStore(region)
    raw.write(first.manifest_key, b"\x00" * first.manifest_size)
    write(root / "added.txt", b"new since the first point")

    job = backup_ok(vault, source)

    assert job.bytes_stored < 64 * KiB  # only the new small file: everything else deduplicates
    assert_point_matches(job.point, snapshot(root))
