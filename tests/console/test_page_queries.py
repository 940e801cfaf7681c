"""Pages that list things run the same number of queries whatever the account holds (issue: pages slow
down with data). Each page is loaded for an account seeded small and one seeded ten times larger,
with more than a page of points in the largest vault; the counts must be equal."""

import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console import services
from console.management.commands.seed_scale import seed_scale
from console.models import Account, Region
from vaults.models import BackupPoint, Vault

from ..conftest import make_user

SMALL = {"vaults": 4, "points": 600}
LARGE = {"vaults": 40, "points": 6000}


def pages(region, vault, point):
    """Every list page of rule set V5/B3/A3 and the dialogs that list vaults, points and targets."""
    code = region.code
    create = reverse("restore:create", args=[code])
    return {
        "Storage Vaults": reverse("vaults:list", args=[code]),
        "a vault page": reverse("vaults:detail", args=[code, vault.id]),
        "a vault page, older points": reverse("vaults:detail", args=[code, vault.id]) + "?page=2",
        "Backup Jobs": reverse("backups:list", args=[code]),
        "Restore Jobs": reverse("restore:list", args=[code]),
        "Create restore job": create,
        "Create restore job, a vault chosen": f"{create}?vault={vault.id}",
        "Create restore job, a point chosen": f"{create}?vault={vault.id}&point={point.id}",
        "Backup Sources": reverse("backups:sources", args=[code]),
        "Restore Targets": reverse("restore:targets", args=[code]),
        "Audit Log": reverse("console:audit-log", args=[code]),
        "Usage & Billing": reverse("console:usage", args=[code]),
    }


def query_counts(client, slug, size):
    region = Region.objects.get(code="cn-hangzhou")
    seed_scale(region, slug, rng=random.Random(3), **size)
    user = make_user(f"{slug}-user")
    services.add_member(actor=None, account=Account.objects.get(slug=slug), user=user)
    client.force_login(user)
    vault = Vault.objects.get(account__slug=slug, name="scale-00001")
    point = BackupPoint.objects.filter(vault=vault, tier="standard").order_by("created").first()
    counts = {}
    for name, url in pages(region, vault, point).items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        counts[name] = len(queries)
    return counts


@pytest.mark.django_db
def test_list_pages_run_a_fixed_number_of_queries(client):
    small = query_counts(client, "small", SMALL)
    large = query_counts(client, "large", LARGE)
    print("\nqueries per page (small / ten times larger):")
    for name in small:
        print(f"  {name:40} {small[name]:3} / {large[name]:3}")
    assert small == large
