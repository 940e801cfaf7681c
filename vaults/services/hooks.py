"""The hooks other apps add to the vault services, in one place, so a reader of an action sees which rules
apply to it (replication and restore fill them at start, in their AppConfig.ready)."""

# -- points ---------------------------------------------------------------------------------------------

# Callables other apps add; each gets a committed point (replication: copy it, rule R8).
POINT_COMMITTED = []


# Callables other apps add; each gets (point id, vault id) of a point that was deleted or expired (rule R9).
POINT_REMOVED = []


# Callables other apps add; each gets a point that moved to the archive tier (replication: rule R10).
POINT_ARCHIVED = []


# Callables other apps add; each gets a point whose retention changed, inside that transaction
# (replication: the copy at a running pair's target keeps the source's retention, rule R9).
RETENTION_CHANGED = []


# Checks other apps add before an expired point is deleted; each returns True to keep it for now
# (replication: a target's copy goes with its source point while the pair runs, rule R9).
EXPIRY_HOLDS = []


# -- guards: each returns a reason (or True) to refuse or hold -----------------------------------------

# Checks other apps add before a vault's points are deleted or changed by hand; each gets the vault and
# returns a reason or None (rule R9).
POINT_DELETE_GUARDS = []


# Hooks (vault) -> True while another app's work in flight needs the vault's unreferenced chunks.
GC_GUARDS = []


# Checks other apps add before a backup starts; each gets (vault, source), returns a reason or None.
BACKUP_GUARDS = []


# Checks other apps add before a backup lock is turned on; each returns a reason or None.
LOCK_GUARDS = []


# Checks other apps add before a vault's own lifecycle rules change; each returns a reason or None
# (replication: a replication target follows its source's lifecycle until it is standalone).
LIFECYCLE_GUARDS = []


# Checks other apps add (replication: rule V7/R13); each returns a reason or None.
DELETE_GUARDS = []


def points_edit_refusal(vault):
    """Why no point of the vault can be deleted or changed by hand now (another app's rule), or None."""
    for guard in POINT_DELETE_GUARDS:
        reason = guard(vault)
        if reason:
            return reason
    return None
