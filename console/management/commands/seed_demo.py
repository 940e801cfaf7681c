"""`manage.py seed_demo`: the demo account, its user and a KMS key; safe to run again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from console import services
from console.models import Account, Region
from vaults.models import KmsKey
from vaults.services import create_kms_key

DEMO_PASSWORD = "cloud-backup-demo"


class Command(BaseCommand):
    help = "Create the demo account 'demo' and its user (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default=DEMO_PASSWORD)

    def handle(self, *args, username, password, **options):
        account = Account.objects.filter(slug="demo").first() or services.create_account(
            actor=None, slug="demo", name="Demo"
        )
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(password)
            user.save()
        services.add_member(actor=None, account=account, user=user)
        region = Region.objects.filter(is_enabled=True).first()
        if region and not KmsKey.objects.filter(account=account, region=region).exists():
            create_kms_key(actor=None, account=account, region=region, alias="demo-key")
        shown = password if created else "(unchanged)"
        self.stdout.write(f"Demo account 'demo': log in as {username} / {shown}")
