"""Rule A3 made tamper-evident (SPEC T4): the audit log is a chain of HMACs.

A row is written with a random unique `nonce` and `mac`, an HMAC over its values and nonce. Just after its
transaction commits, the sealer gives it the next sequence number, under a lock so that numbers have no gap
and no repeat, and `chain`: an HMAC over the row, its number and the previous row's `chain`. The keys derive
from the master secret, which never sits in the database, so whoever can write the database but not read
the secret cannot change, add or remove a row without `verify` finding it.

The newest rows have no successor to betray their removal: for them the head (the newest sealed row's number
and chain) is also written outside the database every few minutes (vaults/services/audit_head.py), signed,
and `verify` compares the log with that copy. A new copy replaces the old one only where the log still holds
the chain the old one names, so a rewritten log cannot make the copy follow it.
"""

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from .master_secret import derived_key
from .models import AuditLog

GENESIS = "0" * 64  # the chain value before the first row
SEAL_BATCH = 1000
# a row is sealed within a second of its commit, or by the periodic sealer: one older and unsealed was
# written around the service
SEAL_GRACE = timedelta(minutes=10)
NOT_AS_WRITTEN = "{} is not as the service wrote it: changed, or inserted from outside."
_SEAL_LOCK = 0x617564_6C6F67  # PostgreSQL advisory lock id ("audlog")
VALUES = (
    "created",
    "actor_id",
    "actor_name",
    "account_id",
    "account_name",
    "region_code",
    "object_type",
    "object_id",
    "action",
    "outcome",
    "detail",
    "nonce",
)


def _key(purpose):
    return derived_key(b"audit-log:" + purpose)


def _canonical(value):
    """Values as the database gives them back: JSON's types, a whole float as the integer its decimal text
    names (jsonb keeps 1e+23 as 100000000000000000000000, not as the float's binary value)."""
    if isinstance(value, float) and value.is_integer():
        return int(Decimal(repr(value)))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _serialised(row, **more):
    """The fixed serialisation of a row's values: the same before it is written and once read back."""
    values = {name: getattr(row, name) for name in VALUES}
    values["created"] = row.created.astimezone(UTC).isoformat(timespec="microseconds")
    values["detail"] = _canonical(json.loads(json.dumps(row.detail, cls=DjangoJSONEncoder)))
    values.update(more)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder).encode()


def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _same(expected, found):
    """Constant-time comparison that takes whatever a tampered row or copy holds (None, any text)."""
    return hmac.compare_digest(expected.encode(), str(found or "").encode())


def _chain(key, row, seq, previous):
    return _hmac(key, previous.encode() + b"\n" + _serialised(row, id=row.pk, seq=seq, mac=row.mac))


def sign(row):
    """Give a row its nonce and HMAC as it is about to be written (console.services.record_audit)."""
    row.nonce = secrets.token_hex(16)
    row.mac = row_mac(row)


def row_mac(row, key=None):
    return _hmac(key or _key(b"row"), _serialised(row))


def seal(model=AuditLog):
    """Chain every row committed since the last seal, in the order they were written; returns how many.

    `model`: a migration passes its historical model."""
    sealed = 0
    key = _key(b"chain")
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":  # SQLite lets one writer in at a time anyway
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK])
            seq, previous = head(model)
            pending = list(model.objects.filter(seq__isnull=True).order_by("pk")[:SEAL_BATCH])
            for row in pending:
                seq += 1
                previous = _chain(key, row, seq, previous)
                # the one change the database lets through: an unsealed row gets its number and chain once
                model.objects.filter(pk=row.pk, seq__isnull=True).update(seq=seq, chain=previous)
        sealed += len(pending)
        if len(pending) < SEAL_BATCH:
            return sealed


def head(model=AuditLog):
    """(number, chain) of the newest sealed row; (0, GENESIS) before the first."""
    newest = model.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "chain").first()
    return newest or (0, GENESIS)


def signed_head():
    """The head as written outside the database: its signature shows it came from the service."""
    seq, chain = head()
    copy = {"seq": seq, "chain": chain, "written": timezone.now().isoformat()}
    copy["signature"] = _hmac(_key(b"head"), json.dumps(copy, sort_keys=True).encode())
    return copy


def copy_problem(copy):
    """Why the log does not continue a copy of its head (a sentence), or None where it does or there is none.

    A copy names the newest row sealed when it was written: the log must still hold that row, with that
    chain value (everything up to it is then as it was, the chain says), and may only have grown since.
    """
    if copy is None:
        return None
    try:
        seq, chain, written = int(copy["seq"]), str(copy["chain"]), str(copy["written"])
    except (KeyError, TypeError, ValueError):
        return "The copy of the head outside the database is unreadable."
    unsigned = {"seq": copy["seq"], "chain": copy["chain"], "written": copy["written"]}
    if not _same(_hmac(_key(b"head"), json.dumps(unsigned, sort_keys=True).encode()), copy.get("signature")):
        return "The copy of the head outside the database is not signed by this service."
    newest, _ = head()
    if seq > newest:
        return (
            f"Rows {newest + 1} to {seq} are missing: removed (the copy of the head written outside the "
            f"database at {written} names row {seq})."
        )
    if seq and AuditLog.objects.filter(seq=seq).values_list("chain", flat=True).first() != chain:
        return f"Row {seq} is not the one the copy of the head written at {written} names: rows were rewritten."
    return None


@dataclass
class Verdict:
    rows: int = 0
    sealed_up_to: int = 0
    unsealed: int = 0
    copy: dict | None = None
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # worth a look, not proof of tampering

    @property
    def intact(self):
        return not self.problems


def verify(*, copy=None):
    """Walk the whole chain; `copy` is the head read from outside the database (None where there is none)."""
    verdict = Verdict(copy=copy)
    row_key, chain_key = _key(b"row"), _key(b"chain")
    expected, previous = 1, GENESIS
    for row in AuditLog.objects.filter(seq__isnull=False).order_by("seq").iterator(chunk_size=2000):
        verdict.rows += 1
        if row.seq != expected:
            verdict.problems.append(f"Rows {expected} to {row.seq - 1} are missing: removed.")
        if not _same(row_mac(row, row_key), row.mac):
            verdict.problems.append(NOT_AS_WRITTEN.format(f"Row {row.seq} (id {row.pk})"))
        elif row.seq == expected and not _same(_chain(chain_key, row, row.seq, previous), row.chain):
            verdict.problems.append(f"Row {row.seq} (id {row.pk}) does not follow row {row.seq - 1}: moved, replaced.")
        previous, expected = row.chain, row.seq + 1
    verdict.sealed_up_to = expected - 1
    for row in AuditLog.objects.filter(seq__isnull=True).order_by("pk").iterator(chunk_size=2000):
        verdict.rows += 1
        verdict.unsealed += 1
        if not _same(row_mac(row, row_key), row.mac):
            verdict.problems.append(NOT_AS_WRITTEN.format(f"Row id {row.pk}"))
        elif row.created < timezone.now() - SEAL_GRACE:
            verdict.problems.append(f"Row id {row.pk} of {row.created:%Y-%m-%d %H:%M:%S} was never sealed.")
    if problem := copy_problem(copy):
        verdict.problems.append(problem)
    elif copy is None and verdict.sealed_up_to:
        verdict.notes.append(
            "There is no copy of the head outside the database yet (it is written every 2 minutes, or by "
            "`manage.py audit seal`): removed newest rows cannot be seen without it. If one was written before, "
            "it was removed, or it is looked for elsewhere (AUDIT_HEAD_REGION)."
        )
    return verdict
