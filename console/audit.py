"""Rule A3 made tamper-evident (SPEC T4): the audit log is a chain of HMACs.

A row is written with `mac`, an HMAC over its own values. Just after its transaction commits, the sealer
gives it the next sequence number, under a lock so that numbers have no gap and no repeat, and `chain`: an
HMAC over the row, its number and the previous row's `chain`. The keys derive from the master secret, which
never sits in the database, so whoever can write the database but not read the secret cannot change, add or
remove a row without `verify` finding it. The newest rows have no successor to betray their removal: for
them the head (the newest sealed row's number and chain) is also written outside the database every few
minutes (vaults/services/audit_head.py), signed, and `verify` compares the log with that copy.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, timedelta

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
)


def _key(purpose):
    return derived_key(b"audit-log:" + purpose)


def _canonical(value):
    """Values as the database gives them back: JSON's types, a whole float as an integer (jsonb drops `.0`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
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


def _chain(key, row, seq, previous):
    return _hmac(key, previous.encode() + b"\n" + _serialised(row, id=row.pk, seq=seq, mac=row.mac))


def sign(row):
    """Set the row's own HMAC as it is about to be written (console.services.record_audit)."""
    row.mac = _hmac(_key(b"row"), _serialised(row))


def seal():
    """Chain every row committed since the last seal, in the order they were written; returns how many."""
    sealed = 0
    key = _key(b"chain")
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":  # SQLite lets one writer in at a time anyway
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK])
            seq, previous = head()
            pending = list(AuditLog.objects.filter(seq__isnull=True).order_by("pk")[:SEAL_BATCH])
            for row in pending:
                seq += 1
                previous = _chain(key, row, seq, previous)
                # the one change the database lets through: an unsealed row gets its number and chain once
                AuditLog.objects.filter(pk=row.pk, seq__isnull=True).update(seq=seq, chain=previous)
        sealed += len(pending)
        if len(pending) < SEAL_BATCH:
            return sealed


def head():
    """(number, chain) of the newest sealed row; (0, GENESIS) before the first."""
    return AuditLog.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "chain").first() or (
        0,
        GENESIS,
    )


def signed_head():
    """The head as written outside the database: its signature shows it came from the service."""
    seq, chain = head()
    copy = {"seq": seq, "chain": chain, "written": timezone.now().isoformat()}
    copy["signature"] = _hmac(_key(b"head"), json.dumps(copy, sort_keys=True).encode())
    return copy


def head_signature_holds(copy):
    unsigned = {name: copy.get(name) for name in ("seq", "chain", "written")}
    expected = _hmac(_key(b"head"), json.dumps(unsigned, sort_keys=True).encode())
    return hmac.compare_digest(expected, str(copy.get("signature", "")))


@dataclass
class Verdict:
    rows: int = 0
    sealed_up_to: int = 0
    unsealed: int = 0
    copy: dict | None = None
    problems: list = field(default_factory=list)

    @property
    def intact(self):
        return not self.problems


def verify(*, copy=None):
    """Walk the whole chain; `copy` is the head read from outside the database (None where there is none)."""
    verdict = Verdict(copy=copy)
    row_key, chain_key = _key(b"row"), _key(b"chain")
    expected, previous = 1, GENESIS
    chain_at = {}
    wanted = int(copy["seq"]) if copy else None
    for row in AuditLog.objects.filter(seq__isnull=False).order_by("seq").iterator(chunk_size=2000):
        verdict.rows += 1
        if row.seq != expected:
            verdict.problems.append(f"Rows {expected} to {row.seq - 1} are missing: removed.")
        if not hmac.compare_digest(_hmac(row_key, _serialised(row)), row.mac):
            verdict.problems.append(NOT_AS_WRITTEN.format(f"Row {row.seq} (id {row.pk})"))
        elif row.seq == expected and not hmac.compare_digest(_chain(chain_key, row, row.seq, previous), row.chain):
            verdict.problems.append(f"Row {row.seq} (id {row.pk}) does not follow row {row.seq - 1}: moved, replaced.")
        previous, expected = row.chain, row.seq + 1
        if row.seq == wanted:
            chain_at[wanted] = row.chain
    verdict.sealed_up_to = expected - 1
    _check_unsealed(verdict, row_key)
    _check_copy(verdict, copy, chain_at)
    return verdict


def _check_unsealed(verdict, row_key):
    for row in AuditLog.objects.filter(seq__isnull=True).order_by("pk").iterator(chunk_size=2000):
        verdict.rows += 1
        verdict.unsealed += 1
        if not hmac.compare_digest(_hmac(row_key, _serialised(row)), row.mac):
            verdict.problems.append(NOT_AS_WRITTEN.format(f"Row id {row.pk}"))
        elif row.created < timezone.now() - SEAL_GRACE:
            verdict.problems.append(f"Row id {row.pk} of {row.created:%Y-%m-%d %H:%M:%S} was never sealed.")


def _check_copy(verdict, copy, chain_at):
    if copy is None:
        return
    if not head_signature_holds(copy):
        verdict.problems.append("The copy of the head outside the database is not signed by this service.")
        return
    seq = int(copy["seq"])
    if seq > verdict.sealed_up_to:
        verdict.problems.append(
            f"Rows {verdict.sealed_up_to + 1} to {seq} are missing: removed (the copy of the head written "
            f"outside the database at {copy['written']} names row {seq})."
        )
    elif seq and chain_at.get(seq) != copy["chain"]:
        verdict.problems.append(
            f"Row {seq} is not the one the copy of the head written at {copy['written']} names: rows were rewritten."
        )
