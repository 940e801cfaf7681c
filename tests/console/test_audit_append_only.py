"""Rule A3 held by the database (SPEC T4): no path changes or removes an audit row, a shell's bulk update
or delete and raw SQL included; deleting an account leaves its rows, all they said but the link."""

import pytest
from django.db import IntegrityError, connection, transaction

from console.models import Account, AuditLog
from console.services import create_account

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the database's own guard is a PostgreSQL trigger"
)


def test_no_path_changes_or_removes_an_audit_row(account):
    row = AuditLog.objects.get(action="create_account", object_id=str(account.pk))
    attempts = [
        lambda: AuditLog.objects.filter(pk=row.pk).update(outcome="refused"),
        lambda: AuditLog.objects.filter(pk=row.pk).update(account=None, action="something else"),
        lambda: AuditLog.objects.filter(pk=row.pk).delete(),
        lambda: AuditLog.objects.all().delete(),
        lambda: connection.cursor().execute("UPDATE console_auditlog SET actor_name = 'nobody'"),
        lambda: connection.cursor().execute("DELETE FROM console_auditlog WHERE id = %s", [row.pk]),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            attempt()
    again = AuditLog.objects.get(pk=row.pk)
    assert (again.outcome, again.action, again.account_id, again.actor_name) == (
        row.outcome,
        row.action,
        row.account_id,
        row.actor_name,
    )


def test_deleting_an_account_keeps_its_rows(db):
    gone = create_account(actor=None, slug="short-lived", name="Short lived")
    row = AuditLog.objects.get(action="create_account", object_id=str(gone.pk))
    Account.objects.filter(pk=gone.pk).delete()  # its resource group goes with it; its audit rows stay
    kept = AuditLog.objects.get(pk=row.pk)
    assert (kept.account_id, kept.account_name, kept.action) == (gone.pk, "Short lived", "create_account")


def test_no_session_empties_the_audit_log_or_the_backup_points(account):
    # TRUNCATE fires no row trigger: a statement trigger refuses it (the suite's own sessions may, to clean up)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the checks the fixtures' writes left pending
        cursor.execute("SET LOCAL cloud_backup.allow_truncate = 'off'")
        for table in ("console_auditlog", "vaults_backuppoint"):
            with pytest.raises(IntegrityError, match="Emptying .* is refused"), transaction.atomic():
                cursor.execute(f"TRUNCATE {table} CASCADE")
    assert AuditLog.objects.filter(action="create_account").exists()
