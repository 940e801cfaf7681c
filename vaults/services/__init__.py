"""Every state change of vaults, keys, backup sources, jobs and points: one function per action."""

from .backups import (
    commit_point,
    create_backup_source,
    delete_point,
    run_backup_job,
    start_backup,
)
from .vaults import (
    DELETE_GUARDS,
    create_kms_key,
    create_vault,
    delete_vault,
    deletion_refusal,
    enable_backup_lock,
    initialize_vault_storage,
    retry_vault_initialization,
    update_vault,
)

__all__ = [
    "DELETE_GUARDS",
    "commit_point",
    "create_backup_source",
    "create_kms_key",
    "create_vault",
    "delete_point",
    "delete_vault",
    "deletion_refusal",
    "enable_backup_lock",
    "initialize_vault_storage",
    "retry_vault_initialization",
    "run_backup_job",
    "start_backup",
    "update_vault",
]
