"""Rule A3 held by PostgreSQL itself (SPEC T4): audit rows are never changed or removed, whatever the path
(a shell's bulk update or delete, raw SQL). Rows keep their account's id and name as values, so deleting an
account changes none. On SQLite only the application's rule holds."""

from django.db import migrations

from console.dbguards import on_postgresql

CREATE = """
CREATE FUNCTION cloud_backup_guard_audit_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'The audit log is append-only: row % cannot be changed or removed.', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER cloud_backup_audit_log_append_only
    BEFORE UPDATE OR DELETE ON console_auditlog
    FOR EACH ROW EXECUTE FUNCTION cloud_backup_guard_audit_log();
"""

DROP = """
DROP TRIGGER IF EXISTS cloud_backup_audit_log_append_only ON console_auditlog;
DROP FUNCTION IF EXISTS cloud_backup_guard_audit_log();
"""



class Migration(migrations.Migration):
    dependencies = [("console", "0007_audit_rows_keep_their_account")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
