"""The audit log's head kept outside the database (rule A3, T4; console/audit.py): every few minutes the
newest sealed row's number and chain value, signed, are written to an object store, so that removing the
newest rows from the database shows in `manage.py audit verify`.

Where is decided by settings alone (AUDIT_HEAD_REGION, and that region's store as the deployment's
OBJECT_STORE defaults name it), never by a database row, which whoever rewrites the log could change too.
A copy is replaced only by one that continues it."""

import json

from django.conf import settings

from console import audit
from console.models import Region

from ..dataplane.objectstore import ObjectStoreError, region_store

HEAD_KEY = "service/audit-log-head.json"


class HeadNotReplaced(Exception):
    """The log does not continue the copy outside the database: the copy is kept, for `audit verify`."""


def head_store():
    """The store of AUDIT_HEAD_REGION as the deployment's settings name it (an unsaved Region: no row's
    overrides)."""
    return region_store(Region(code=settings.AUDIT_HEAD_REGION))


def write_audit_head():
    """Seal what is pending, then write the head where the log continues the copy there; returns it."""
    audit.seal()
    store = head_store()
    store.ensure_ready()
    if problem := audit.copy_problem(read_audit_head()):
        raise HeadNotReplaced(f"{problem} The copy outside the database is kept; run manage.py audit verify.")
    copy = audit.signed_head()
    store.put(HEAD_KEY, json.dumps(copy, sort_keys=True).encode())
    return copy


def read_audit_head():
    """The copy outside the database, or None where none was written yet."""
    store = head_store()
    if not store.exists(HEAD_KEY):
        return None
    try:
        copy = json.loads(store.get(HEAD_KEY))
    except (ValueError, ObjectStoreError) as exc:
        return {"unreadable": str(exc)}
    return copy if isinstance(copy, dict) else {"unreadable": "not a JSON object"}
