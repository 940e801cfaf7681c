"""`manage.py verify VAULT_ID`: read back every chunk of every point; non-zero exit on any problem."""

import json

from django.core.management.base import BaseCommand, CommandError

from console.commandsupport import lookup
from vaults.dataplane.readback import verify_vault
from vaults.models import Vault


class Command(BaseCommand):
    help = "Verify every backup point of a vault: AEAD tags, chunk ids and file hashes."

    def add_arguments(self, parser):
        parser.add_argument("vault_id")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, vault_id, as_json=False, **options):
        vault = lookup(Vault.objects.select_related("region", "kms_key"), "vault", pk=vault_id)
        report = verify_vault(vault)
        if as_json:
            self.stdout.write(json.dumps(report))
        else:
            self.stdout.write(
                f"{report['points']} points, {report['files']} files, {report['chunks']} chunks, "
                f"{report['bytes']} bytes read"
            )
            for p in report["problems"]:
                self.stdout.write(f"{p['point']} {p['path'] or '(manifest)'}: {p['problem']}")
        if report["problems"]:
            raise CommandError(f"{len(report['problems'])} problem(s) found in {vault.id}.")
