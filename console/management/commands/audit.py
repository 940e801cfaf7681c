"""`manage.py audit verify|seal [--json]`: the audit log's chain (rule A3, T4; console/audit.py).

`verify` walks every row and compares the newest with the copy of the head kept outside the database; it
exits with status 1 and one line per problem when a row was changed, inserted or removed. `seal` chains the
rows not chained yet and writes the head outside the database now (the periodic task does it every 2 min).
"""

import json

from django.core.management.base import CommandError

from console import audit
from console.commandsupport import ServiceCommand
from vaults.dataplane.objectstore import ObjectStoreError
from vaults.services import audit_head


class Command(ServiceCommand):
    help = "Verify the audit log's chain, or seal it and write its head outside the database now."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        self.subcommand("verify", "find changed, inserted or removed audit rows")
        self.subcommand("seal", "chain pending rows and write the head outside the database")

    def handle_verify(self, **options):
        try:
            copy = audit_head.read_audit_head()
        except ObjectStoreError as exc:
            raise CommandError(f"Cannot read the head outside the database: {exc}") from exc
        verdict = audit.verify(copy=copy)
        result = {
            "intact": verdict.intact,
            "rows": verdict.rows,
            "sealed_up_to": verdict.sealed_up_to,
            "unsealed": verdict.unsealed,
            "head_copy": copy,
            "problems": verdict.problems,
            "notes": verdict.notes,
        }
        where = f"the copy outside the database names row {copy['seq']}" if copy and "seq" in copy else "no copy"
        text = f"{verdict.rows} rows, sealed up to {verdict.sealed_up_to}, {verdict.unsealed} pending; {where}"
        if not verdict.intact:
            if options.get("json"):
                self.stdout.write(json.dumps(result, default=str))
            raise CommandError("\n".join([f"The audit log was tampered with ({text}):", *verdict.problems]))
        return result, "\n".join([f"The audit log is intact: {text}.", *verdict.notes])

    def handle_seal(self, **options):
        try:
            copy = audit_head.write_audit_head()
        except (audit_head.HeadNotReplaced, ObjectStoreError) as exc:
            raise CommandError(str(exc)) from exc
        return copy, f"Sealed up to row {copy['seq']}; the head is written outside the database."
