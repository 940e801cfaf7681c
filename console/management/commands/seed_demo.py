"""`manage.py seed_demo`: the demo account, its user, a KMS key and two OSS buckets; safe to run again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from console import services
from console.models import Account, Region
from vaults.models import KmsKey, OssBucket
from vaults.services import assign_bucket, create_kms_key

DEMO_BUCKETS = ("demo-photos", "demo-restores")  # the demo account's OSS buckets (rule T2)

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
        for bucket in DEMO_BUCKETS if region else ():
            if not OssBucket.objects.filter(region=region, name=bucket).exists():
                assign_bucket(actor=None, account=account, region=region, name=bucket)
        shown = password if created else "(unchanged)"
        self.stdout.write(f"Demo account 'demo': log in as {username} / {shown}")
