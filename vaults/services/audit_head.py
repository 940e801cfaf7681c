"""The audit log's head kept outside the database (rule A3, T4; console/audit.py): every few minutes the
newest sealed row's number and chain value, signed, are written to the object store of the console's
region, so that removing the newest rows from the database shows in `manage.py audit verify`."""

import json

from django.conf import settings

from console import audit
from console.models import Region

from ..dataplane.objectstore import ObjectStoreError, region_store

HEAD_KEY = "service/audit-log-head.json"


class NoHeadRegion(Exception):
    """There is no region to keep the head in."""


def head_store():
    """The store of AUDIT_HEAD_REGION, else of the first region by code."""
    region = Region.objects.filter(code=settings.AUDIT_HEAD_REGION).first() if settings.AUDIT_HEAD_REGION else None
    region = region or Region.objects.order_by("code").first()
    if region is None:
        raise NoHeadRegion("There is no region whose store could keep the audit log's head.")
    return region_store(region)


def write_audit_head():
    """Seal what is pending, then write the head; returns the copy written."""
    audit.seal()
    copy = audit.signed_head()
    store = head_store()
    store.ensure_ready()
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
