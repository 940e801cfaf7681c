"""Rules L1 and T4 held by PostgreSQL itself, whatever path reaches it (a shell, a bulk ORM call, raw SQL): a
locked vault's unexpired point is not deleted, its expiry is not shortened, and a lock is never cleared.
The Python checks stay, for the clear messages; on SQLite (the single-user `make run`) only they hold."""

from django.db import migrations

from console.dbguards import on_postgresql

CREATE = """
CREATE FUNCTION cloud_backup_guard_locked_point() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    locked boolean;
BEGIN
    SELECT backup_lock INTO locked FROM vaults_vault WHERE id = OLD.vault_id;
    IF NOT COALESCE(locked, false) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.expires IS NULL OR OLD.expires > clock_timestamp() THEN
            RAISE EXCEPTION 'Backup lock is on: backup point % cannot be deleted before it expires.', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.expires IS NOT NULL AND (OLD.expires IS NULL OR NEW.expires < OLD.expires) THEN
        RAISE EXCEPTION 'Backup lock is on: the retention of backup point % can be extended, never shortened.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.vault_id <> OLD.vault_id THEN
        RAISE EXCEPTION 'Backup lock is on: backup point % cannot leave its vault.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER cloud_backup_locked_point
    BEFORE UPDATE OR DELETE ON vaults_backuppoint
    FOR EACH ROW EXECUTE FUNCTION cloud_backup_guard_locked_point();

CREATE FUNCTION cloud_backup_guard_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.backup_lock AND NOT NEW.backup_lock THEN
        RAISE EXCEPTION 'Backup lock is on for vault %: once on, it is never turned off.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER cloud_backup_lock_stays
    BEFORE UPDATE OF backup_lock ON vaults_vault
    FOR EACH ROW EXECUTE FUNCTION cloud_backup_guard_lock();
"""

DROP = """
DROP TRIGGER IF EXISTS cloud_backup_lock_stays ON vaults_vault;
DROP FUNCTION IF EXISTS cloud_backup_guard_lock();
DROP TRIGGER IF EXISTS cloud_backup_locked_point ON vaults_backuppoint;
DROP FUNCTION IF EXISTS cloud_backup_guard_locked_point();
"""



class Migration(migrations.Migration):
    dependencies = [("vaults", "0008_one_job_lifecycle")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
