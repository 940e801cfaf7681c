"""Regions (rules G1-G3): the shipped list, the selector, switching, unknown codes."""

from console.models import Region
from console.services import save_region

ZRS = [
    "China (Hangzhou)",
    "China (Shanghai)",
    "China (Beijing)",
    "China (Zhangjiakou)",
    "China (Ulanqab)",
    "China (Shenzhen)",
    "Hong Kong (China)",
    "Japan (Tokyo)",
    "Singapore",
    "Indonesia (Jakarta)",
    "Germany (Frankfurt)",
    "Malaysia (Kuala Lumpur)",
]
LRS = [
    "China (Qingdao)",
    "China (Hohhot)",
    "China (Chengdu)",
    "US (Silicon Valley)",
    "US (Virginia)",
    "UK (London)",
    "UAE (Dubai)",
]


def test_the_regions_of_rule_g2_are_seeded_with_their_redundancy(db):
    # rule G2
    regions = {r.name: r for r in Region.objects.all()}
    assert {n for n in ZRS if regions[n].supports_zrs} == set(ZRS)
    assert {n for n in LRS if not regions[n].supports_zrs} == set(LRS)
    assert all(r.supports_cross_region for r in regions.values())


def test_every_page_has_the_region_selector_with_every_region(alice):
    # rule G3
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    for region in Region.objects.all():
        assert f"{region.name} <code>{region.code}</code>" in body.replace("&amp;", "&")


def test_switching_region_keeps_the_kind_of_page(alice, make_vault):
    # rule G3: list -> same list in the new region; detail -> the list of the new region
    vault = make_vault("v")
    pages = {
        "/regions/cn-hangzhou/vaults/": "/regions/us-west-1/vaults/",
        "/regions/cn-hangzhou/audit-log/": "/regions/us-west-1/audit-log/",
        "/regions/cn-hangzhou/backup-jobs/": "/regions/us-west-1/backup-jobs/",
        "/regions/cn-hangzhou/backup-sources/": "/regions/us-west-1/backup-sources/",
        f"/regions/cn-hangzhou/vaults/{vault.id}/": "/regions/us-west-1/vaults/",
    }
    for page, expected in pages.items():
        body = alice.get(page).content.decode()
        assert f'href="{expected}"' in body, page


def test_an_unknown_region_is_404_and_a_disabled_one_stays_open(alice, region):
    # a disabled region's vaults stay visible (tests/restore/test_disabled_region.py); an account with
    # nothing there does not see it in the selector
    assert alice.get("/regions/mars-1/vaults/").status_code == 404
    region.is_enabled = False
    save_region(actor=None, region=region)
    page = alice.get("/regions/cn-hangzhou/vaults/")
    assert page.status_code == 200 and "disabled by the operator" in page.content.decode()
    assert "cn-hangzhou" not in alice.get("/regions/us-west-1/vaults/").content.decode()


def test_navigation_lists_the_console_sections(alice):
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    for label in ["Storage Vaults", "Backup Jobs", "Restore Jobs", "Policy Center", "Usage &amp; Billing", "Audit Log"]:
        assert label in body


def test_pages_need_login(client, db):
    response = client.get("/regions/cn-hangzhou/vaults/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
