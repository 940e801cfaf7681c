"""Rule A3 made tamper-evident (SPEC T4): the audit log is a chain of HMACs whose head is also kept outside the
database; `manage.py audit verify` finds an edited, inserted or removed row, the newest ones included.

The attacker here can write the database (on PostgreSQL as its owner, who can lift the append-only trigger)
but cannot read the master secret: that is the case the chain is for."""

from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from console import audit
from console.models import AuditLog
from console.services import record_audit
from vaults.services import audit_head

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the guard is a PostgreSQL trigger")


@contextmanager
def as_database_owner():
    """What the owner of the database can do: lift the append-only trigger for a moment."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the checks the test's own writes left pending
            cursor.execute("ALTER TABLE console_auditlog DISABLE TRIGGER cloud_backup_audit_log_append_only")
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE console_auditlog ENABLE TRIGGER cloud_backup_audit_log_append_only")


def write_rows(count, **detail):
    return [
        record_audit(actor=None, action="test_action", object_type="test", object_id=i, **detail) for i in range(count)
    ]


def sealed_rows(count=5):
    rows = write_rows(count)
    audit.seal()
    return [AuditLog.objects.get(pk=row.pk) for row in rows]


def problems(copy=None):
    return audit.verify(copy=copy).problems


def test_rows_are_numbered_without_gaps_in_the_order_written_and_verify(db):
    rows = sealed_rows(5)
    numbers = [row.seq for row in rows]
    assert numbers == list(range(numbers[0], numbers[0] + 5))
    assert all(len(row.mac) == 64 and len(row.chain) == 64 for row in rows)
    verdict = audit.verify()
    assert verdict.intact, verdict.problems
    assert (verdict.sealed_up_to, verdict.unsealed) == (numbers[-1], 0)


def test_values_read_back_from_the_database_verify_as_they_were_signed(db):
    """Decimals, whole floats (jsonb drops their `.0`), non-ASCII names and nested values survive the round trip."""
    record_audit(
        actor=None,
        action="price",
        object_type="region",
        price=Decimal("0.0250"),
        big=1e20,
        bigger=1e23,
        huge=2.0**60,
        ratio=0.1 + 0.2,
        name="Zürich 東京",
        nested={"list": [1, 2.0, None, True], "when": timezone.now()},
    )
    audit.seal()
    assert problems() == []


def test_a_row_is_sealed_as_soon_as_its_transaction_commits(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        row = record_audit(actor=None, action="test_action", object_type="test")
    assert AuditLog.objects.get(pk=row.pk).seq is not None


def test_an_edited_row_is_found(db):
    rows = sealed_rows()
    with as_database_owner() as cursor:
        cursor.execute("UPDATE console_auditlog SET outcome = 'refused' WHERE id = %s", [rows[2].pk])
    assert problems() == [audit.NOT_AS_WRITTEN.format(f"Row {rows[2].seq} (id {rows[2].pk})")]


def test_an_inserted_row_is_found_sealed_or_not(db):
    rows = sealed_rows()
    forged = dict(
        created=timezone.now(), actor_name="system", account_name="", region_code="", object_type="vault",
        object_id="1", action="disable_backup_lock", outcome="success", detail={},
    )  # fmt: skip
    AuditLog.objects.bulk_create([AuditLog(**forged)])  # unsealed: the sealer chains it, the row MAC betrays it
    audit.seal()
    inserted = AuditLog.objects.order_by("-pk").first()
    assert problems() == [audit.NOT_AS_WRITTEN.format(f"Row {inserted.seq} (id {inserted.pk})")]
    # one with a number and a made-up chain value of its own, past the head
    AuditLog.objects.bulk_create([AuditLog(**forged, seq=rows[-1].seq + 10, chain="f" * 64, mac="e" * 64)])
    found = problems()
    assert any("missing: removed" in problem for problem in found)
    assert len([p for p in found if "not as the service wrote it" in p]) == 2


def test_a_removed_row_in_the_middle_is_found(db):
    rows = sealed_rows()
    with as_database_owner() as cursor:
        cursor.execute("DELETE FROM console_auditlog WHERE id = %s", [rows[1].pk])
    assert problems() == [f"Rows {rows[1].seq} to {rows[1].seq} are missing: removed."]


def test_rows_moved_in_the_chain_are_found(db):
    rows = sealed_rows()
    a, b = rows[1], rows[2]
    with as_database_owner() as cursor:  # the two rows swap numbers and chain values: each MAC still holds
        cursor.execute("UPDATE console_auditlog SET seq = -seq WHERE id IN (%s, %s)", [a.pk, b.pk])
        cursor.execute("UPDATE console_auditlog SET seq = %s, chain = %s WHERE id = %s", [b.seq, b.chain, a.pk])
        cursor.execute("UPDATE console_auditlog SET seq = %s, chain = %s WHERE id = %s", [a.seq, a.chain, b.pk])
    assert problems()  # a row that does not follow its predecessor


def test_the_newest_rows_removed_are_found_by_the_head_kept_outside_the_database(db):
    rows = sealed_rows()
    copy = audit_head.write_audit_head()
    assert copy["seq"] == rows[-1].seq
    assert audit_head.read_audit_head() == copy
    call_command("audit", "verify")  # intact
    with as_database_owner() as cursor:
        cursor.execute("DELETE FROM console_auditlog WHERE id IN (%s, %s)", [rows[-1].pk, rows[-2].pk])
    assert problems() == []  # the chain alone cannot tell: the newest rows have no successor
    with pytest.raises(CommandError) as refused:
        call_command("audit", "verify")
    assert f"Rows {rows[-2].seq} to {rows[-1].seq} are missing: removed" in str(refused.value)


def test_a_forged_head_copy_is_found(db):
    sealed_rows(2)
    copy = audit_head.write_audit_head()
    assert problems({**copy, "seq": copy["seq"] - 1}) == [
        "The copy of the head outside the database is not signed by this service."
    ]
    assert problems({"seq": "x"}) == ["The copy of the head outside the database is unreadable."]


def test_the_copy_outside_the_database_follows_only_a_log_that_continues_it(db):
    """Rows removed and the rest sealed again (the owner lifts the guard, clears their numbers): the next
    periodic write keeps the old copy, so verify still finds the removal."""
    rows = sealed_rows(4)
    audit_head.write_audit_head()
    with as_database_owner() as cursor:
        cursor.execute("DELETE FROM console_auditlog WHERE id = %s", [rows[1].pk])
        cursor.execute("UPDATE console_auditlog SET seq = NULL, chain = '' WHERE seq >= %s", [rows[1].seq])
    write_rows(1)  # the log grows on past the copy's row
    audit.seal()  # the sealer chains the rest again, seamlessly
    assert problems() == []  # the chain alone cannot tell
    with pytest.raises(audit_head.HeadNotReplaced, match="rows were rewritten"):
        audit_head.write_audit_head()
    with pytest.raises(CommandError, match="rows were rewritten"):
        call_command("audit", "verify")
    # the newest rows removed, then the periodic write: the copy stays, and says how many are gone
    with as_database_owner() as cursor:
        cursor.execute("DELETE FROM console_auditlog WHERE seq >= %s", [rows[-1].seq])
    with pytest.raises(audit_head.HeadNotReplaced, match="missing: removed"):
        audit_head.write_audit_head()
    assert audit_head.read_audit_head()["seq"] == rows[-1].seq  # the copy written before all this


def test_a_copied_row_cannot_be_added_again(db):
    row = sealed_rows(1)[0]
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO console_auditlog (created, actor_name, account_name, region_code, object_type, object_id, "
            "action, outcome, detail, nonce, mac, chain) SELECT created, actor_name, account_name, region_code, "
            "object_type, object_id, action, outcome, detail, nonce, mac, '' FROM console_auditlog WHERE id = %s",
            [row.pk],
        )


def test_without_the_copy_outside_the_database_verify_notes_it(db):
    row = AuditLog(
        created=timezone.now() - audit.SEAL_GRACE - timedelta(minutes=1),
        actor_name="system",
        object_type="test",
        action="test_action",
    )
    audit.sign(row)
    AuditLog.objects.bulk_create([row])
    audit.seal()
    verdict = audit.verify(copy=None)
    assert verdict.problems == [] and verdict.notes[0].startswith("There is no copy of the head outside the database")


def test_a_row_never_sealed_is_found_once_the_sealer_should_have_run(db):
    row = AuditLog(
        created=timezone.now() - audit.SEAL_GRACE - timedelta(minutes=1),
        actor_name="system",
        object_type="test",
        action="test_action",
    )
    audit.sign(row)
    AuditLog.objects.bulk_create([row])
    assert problems() == [f"Row id {row.pk} of {row.created:%Y-%m-%d %H:%M:%S} was never sealed."]


@postgresql_only
def test_the_database_lets_only_sealing_through(db):
    rows = sealed_rows(1)
    pending = write_rows(1)[0]
    sealed = rows[0]
    attempts = [
        lambda: AuditLog.objects.filter(pk=sealed.pk).update(seq=sealed.seq + 100),  # renumber a sealed row
        lambda: AuditLog.objects.filter(pk=sealed.pk).update(chain="0" * 64),
        lambda: AuditLog.objects.filter(pk=pending.pk).update(seq=999999, chain="a" * 64, outcome="refused"),
        lambda: AuditLog.objects.filter(pk=pending.pk).update(mac="b" * 64),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            attempt()
    audit.seal()
    assert problems() == []
