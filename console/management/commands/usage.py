"""`manage.py usage --account SLUG --region CODE [--month YYYY-MM] [--json]`: usage and charges (rule B3).

The same figures as the console's Usage & Billing page: per vault and per day of the month.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from console.commandsupport import lookup
from console.models import Account, Region
from console.overview import billing


class Command(BaseCommand):
    help = "Usage and charges of an account in a region, per vault and per day of a month."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--region", required=True, help="region code")
        parser.add_argument("--month", default="", help="YYYY-MM (default: this month)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, account, region, month, **options):
        account = lookup(Account.objects, "account", slug=account)
        region = lookup(Region.objects, "region", code=region)
        try:
            first_day = billing.parse_month(month)
        except billing.BadMonth as exc:
            raise CommandError(str(exc)) from exc
        usage = billing.month_usage(account, region, first_day)
        if options["json"]:
            self.stdout.write(json.dumps({"account": account.slug, **billing.as_dict(usage)}))
            return
        self.stdout.write(f"{region.name}, {first_day:%B %Y}: {usage.total.total:.4f} {usage.currency}")
        for line in usage.vaults:
            self.stdout.write(
                f"  {line.label}: storage {line.gb_months} GB-months {line.storage_charge:.4f}, "
                f"replication {line.traffic_bytes} B {line.traffic_charge:.4f}, "
                f"Internet {line.internet_bytes} B {line.internet_charge:.4f}, total {line.total:.4f}"
            )
