"""Tamper detection: `verify_vault` and `manage.py verify` find changed, missing or swapped backup data
and name the point and the file (rules P1, V4: data is authenticated under the vault's key).

Objects are damaged with the raw means of each backend (the file on disk, a plain boto3 client).
"""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.vaults.conftest import RawStore, backup_ok, build_tree, make_source
from vaults.dataplane.chunkstore import NONCE
from vaults.dataplane.readback import PointReader, verify_vault
from vaults.models import Chunk

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_queue")]

TARGET = "a/b/c/deep.dat"  # a random file of the first tree, in no other point


@pytest.fixture
def two_points(tmp_path, account, region, normal_vault):
    """A vault with two points of two different trees; returns (vault, first point, second point)."""
    vault = normal_vault()
    first = backup_ok(vault, make_source(account, region, "ecs-file", path=build_tree(tmp_path / "one", seed=1)))
    second = backup_ok(vault, make_source(account, region, "nas", path=build_tree(tmp_path / "two", seed=2)))
    assert verify_vault(vault)["problems"] == []
    return vault, first.point, second.point


def chunk_location(vault, point, path):
    """(pack key, offset, length) of the first chunk of a file of a point, from the chunk index."""
    entry = next(e for e in PointReader(point).manifest()["entries"] if e["path"] == path)
    chunk = Chunk.objects.select_related("pack").get(vault=vault, chunk_id=bytes.fromhex(entry["chunks"][0][0]))
    return chunk.pack.key, chunk.offset, chunk.length


def verify_command(vault):
    """`manage.py verify VAULT --json`: (report, CommandError or None)."""
    out = StringIO()
    try:
        call_command("verify", vault.id, "--json", stdout=out)
    except CommandError as exc:
        return json.loads(out.getvalue()), exc
    return json.loads(out.getvalue()), None


# Where in the sealed chunk (flag | nonce | ciphertext | tag) the byte is flipped.
POSITIONS = {
    "flag": lambda length: 0,
    "nonce": lambda length: 1 + NONCE // 2,
    "ciphertext": lambda length: length // 2,
    "tag": lambda length: length - 1,
}


@pytest.mark.parametrize(
    "store_backend,position",
    [("local", p) for p in POSITIONS] + [("s3", "ciphertext")],
    indirect=["store_backend"],
)
def test_flipped_byte_in_a_pack_is_reported_with_point_and_path(store_backend, two_points, position):
    # rules P1, V4: a changed byte anywhere in a stored chunk is detected; the report names the point and
    # the file, and nothing else
    vault, first, second = two_points
    raw = RawStore(vault.region)
    key, offset, length = chunk_location(vault, first, TARGET)
    raw.flip(key, offset + POSITIONS[position](length))

    report = verify_vault(vault)

    assert report["points"] == 2
    assert report["problems"], "a flipped byte went unnoticed"
    assert {(p["point"], p["path"]) for p in report["problems"]} == {(first.id, TARGET)}
    if position != "flag":
        assert all("tag" in p["problem"] or "authentic" in p["problem"] for p in report["problems"]), report
    # the command exits non-zero (CommandError) and prints the same report
    shown, error = verify_command(vault)
    assert error is not None and vault.id in str(error)
    assert shown["problems"] == report["problems"]

    raw.flip(key, offset + POSITIONS[position](length))  # put the byte back: clean again
    assert verify_vault(vault)["problems"] == []
    assert verify_command(vault)[1] is None


def test_deleted_pack_is_reported_for_every_file_it_held(store_backend, two_points):
    # rule P1: a missing pack object is found; every file whose chunks it held is reported, in every point
    # that shares them (the two trees have two identical small files, stored once)
    vault, first, second = two_points
    key, _, _ = chunk_location(vault, first, TARGET)
    RawStore(vault.region).delete(key)
    in_pack = {
        bytes(c).hex() for c in Chunk.objects.filter(vault=vault, pack__key=key).values_list("chunk_id", flat=True)
    }
    held = {
        (point.id, e["path"])
        for point in (first, second)
        for e in PointReader(point).manifest()["entries"]
        if any(c in in_pack for c, _ in e.get("chunks", []))
    }
    assert {(first.id, TARGET), (first.id, "big.bin"), (second.id, "bin/run.sh")} <= held

    report = verify_vault(vault)

    assert {(p["point"], p["path"]) for p in report["problems"]} == held
    assert all("Cannot read" in p["problem"] for p in report["problems"]), report["problems"]
    shown, error = verify_command(vault)
    assert error is not None and len(shown["problems"]) == len(held)


def test_flipped_manifest_is_reported_for_its_point(store_backend, two_points):
    # rule P1: a manifest that does not authenticate is reported for its point (no file can be trusted)
    vault, first, second = two_points
    raw = RawStore(vault.region)
    size = len(raw.read(first.manifest_key))
    raw.flip(first.manifest_key, size // 2)

    report = verify_vault(vault)

    assert len(report["problems"]) == 1
    problem = report["problems"][0]
    assert (problem["point"], problem["path"]) == (first.id, None)
    assert "manifest" in problem["problem"] and ("tag" in problem["problem"] or "authentic" in problem["problem"])
    assert report["files"] == second.files  # the other point is still verified in full
    assert verify_command(vault)[1] is not None
