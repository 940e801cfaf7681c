"""Rules L1 and T4: TRUNCATE fires no row trigger, so a statement trigger refuses emptying the backup points
(console 0010's cloud_backup_refuse_truncate; the test suite's own sessions may, to clean up between tests)."""

from django.db import migrations

from console.dbguards import on_postgresql

CREATE = """
CREATE TRIGGER cloud_backup_points_kept
    BEFORE TRUNCATE ON vaults_backuppoint
    FOR EACH STATEMENT EXECUTE FUNCTION cloud_backup_refuse_truncate();
"""

DROP = "DROP TRIGGER IF EXISTS cloud_backup_points_kept ON vaults_backuppoint;"


class Migration(migrations.Migration):
    dependencies = [("vaults", "0009_backup_lock_in_the_database"), ("console", "0010_audit_log_sealing")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
