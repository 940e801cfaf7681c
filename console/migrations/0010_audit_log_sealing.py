"""The audit log's chain (console/audit.py, rule A3, T4): PostgreSQL's guard lets one change through, an
unsealed row getting its number and chain value once, every other value as it was; rows written before the
chain are signed and sealed now, in the order they were written."""

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
    from console.audit import _hmac, _key, _serialised, seal

    AuditLog = apps.get_model("console", "AuditLog")
    postgresql = schema_editor.connection.vendor == "postgresql"
    if not AuditLog.objects.filter(mac="").exists():
        return
    key = _key(b"row")
    with schema_editor.connection.cursor() as cursor:
        if postgresql:  # the owner lifts the guard for this one signing, in this migration's transaction
            cursor.execute("ALTER TABLE console_auditlog DISABLE TRIGGER cloud_backup_audit_log_append_only")
        for row in AuditLog.objects.filter(mac="").order_by("pk").iterator():
            AuditLog.objects.filter(pk=row.pk).update(mac=_hmac(key, _serialised(row)))
        if postgresql:
            cursor.execute("ALTER TABLE console_auditlog ENABLE TRIGGER cloud_backup_audit_log_append_only")
    seal()  # with the service's model, which is this schema's: only a database from before 0010 gets here




class Migration(migrations.Migration):
    dependencies = [("console", "0009_audit_log_chained")]

    operations = [
        migrations.RunPython(on_postgresql(GUARD), on_postgresql(GUARD_BEFORE)),
        migrations.RunPython(sign_rows_written_before, migrations.RunPython.noop),
    ]
