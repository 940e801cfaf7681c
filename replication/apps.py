from django.apps import AppConfig


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Cross-region replication"

    def ready(self):
        """Hook replication's rules and triggers into the vault services (one place each)."""
        # imported here, not at the top: the app registry is ready only now
        from vaults import services as vault_services
        from vaults import views as vault_views

        from . import selectors, services, triggers

        vault_views.VAULT_ANNOTATORS.append(selectors.annotate_vaults)
        vault_services.DELETE_GUARDS.append(services.vault_delete_guard)
        vault_services.POINT_DELETE_GUARDS.append(services.point_edit_guard)
        vault_services.LOCK_GUARDS.append(services.lock_guard)
        vault_services.LIFECYCLE_GUARDS.append(services.lifecycle_guard)
        vault_services.GC_GUARDS.append(services.gc_guard)
        vault_services.EXPIRY_HOLDS.append(services.expiry_hold)
        vault_services.BACKUP_GUARDS.append(services.backup_guard)
        vault_services.RETENTION_CHANGED.append(triggers.retention_changed)
        vault_services.POINT_COMMITTED.append(triggers.point_committed)
        vault_services.POINT_REMOVED.append(triggers.point_removed)
        vault_services.POINT_ARCHIVED.append(triggers.point_archived)
