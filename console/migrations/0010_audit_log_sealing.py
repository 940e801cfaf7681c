"""The audit log's chain (console/audit.py, rule A3, T4): PostgreSQL's guard lets one change through, an
unsealed row getting its number and chain value once, every other value as it was, and refuses TRUNCATE;
rows written before the chain are signed and sealed now, in the order they were written."""

import secrets
from pathlib import Path

from django.conf import settings
from django.db import migrations

from console.dbguards import on_postgresql

GUARD = """
CREATE OR REPLACE FUNCTION cloud_backup_guard_audit_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL AND NEW.chain <> ''
       AND (to_jsonb(NEW) - 'seq' - 'chain') = (to_jsonb(OLD) - 'seq' - 'chain') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'The audit log is append-only: row % cannot be changed or removed.', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
"""

# TRUNCATE fires no row trigger: a statement trigger refuses it. The test suite empties its tables between tests
# with TRUNCATE and says so with cloud_backup.allow_truncate, a setting of its own sessions (tests/conftest.py).
NO_TRUNCATE = """
CREATE FUNCTION cloud_backup_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('cloud_backup.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'Emptying % is refused: the database keeps its rows (SPEC T4).', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER cloud_backup_audit_log_kept
    BEFORE TRUNCATE ON console_auditlog
    FOR EACH STATEMENT EXECUTE FUNCTION cloud_backup_refuse_truncate();
"""

ALLOW_TRUNCATE = """
DROP TRIGGER IF EXISTS cloud_backup_audit_log_kept ON console_auditlog;
DROP FUNCTION IF EXISTS cloud_backup_refuse_truncate();
"""

GUARD_BEFORE = """
CREATE OR REPLACE FUNCTION cloud_backup_guard_audit_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'The audit log is append-only: row % cannot be changed or removed.', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
"""


def sign_rows_written_before(apps, schema_editor):
    # the chain's own code, not a copy: the rows must be signed exactly as the service signs new ones
    from console.audit import _key, row_mac, seal

    AuditLog = apps.get_model("console", "AuditLog")
    if not AuditLog.objects.filter(mac="").exists():
        return
    if not (settings.MASTER_SECRET or Path(settings.MASTER_SECRET_FILE).exists()):
        raise RuntimeError(
            "The audit log's rows are signed with a key derived from the master secret, which is not here: "
            "set CLOUD_BACKUP_MASTER_SECRET or CLOUD_BACKUP_MASTER_SECRET_FILE as the service runs, and migrate again."
        )
    postgresql = schema_editor.connection.vendor == "postgresql"
    key = _key(b"row")
    with schema_editor.connection.cursor() as cursor:
        if postgresql:  # the owner lifts the guard for this one signing, in this migration's transaction
            cursor.execute("ALTER TABLE console_auditlog DISABLE TRIGGER cloud_backup_audit_log_append_only")
        for row in AuditLog.objects.filter(mac="").order_by("pk").iterator():
            row.nonce = secrets.token_hex(16)
            AuditLog.objects.filter(pk=row.pk).update(nonce=row.nonce, mac=row_mac(row, key))
        if postgresql:
            cursor.execute("ALTER TABLE console_auditlog ENABLE TRIGGER cloud_backup_audit_log_append_only")
    seal(AuditLog)


class Migration(migrations.Migration):
    dependencies = [("console", "0009_audit_log_chained")]

    operations = [
        migrations.RunPython(on_postgresql(GUARD), on_postgresql(GUARD_BEFORE)),
        migrations.RunPython(on_postgresql(NO_TRUNCATE), on_postgresql(ALLOW_TRUNCATE)),
        migrations.RunPython(sign_rows_written_before, migrations.RunPython.noop),
    ]
