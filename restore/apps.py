from django.apps import AppConfig


class RestoreConfig(AppConfig):
    name = "restore"
    verbose_name = "Restore"

    def ready(self):
        """Hook restore's guards into the vault services: a vault being read is not deleted or collected."""
        # imported here, not at the top: the app registry is ready only now
        from vaults import services as vault_services

        from . import services

        vault_services.DELETE_GUARDS.append(services.vault_delete_guard)
        vault_services.GC_GUARDS.append(services.gc_guard)
