"""Rule A1 on every path: another account's vault is a 404 everywhere, never 200 or 500."""

import pytest

from tests.conftest import make_user
from vaults.models import Vault

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def foreign_vault(make_vault, other_account):
    return make_vault("their-secrets", acct=other_account)


def test_every_vault_url_is_404_for_another_account(alice, foreign_vault):
    base = f"/regions/cn-hangzhou/vaults/{foreign_vault.id}/"
    for url in [base, base + "status/", base + "delete/"]:
        assert alice.get(url).status_code == 404, url
        assert alice.get(url, **HTMX).status_code == 404, url
    for url in [base + "delete/", base + "retry/"]:
        assert alice.post(url, {"confirmation": foreign_vault.name}).status_code == 404, url
        assert alice.post(url, {"confirmation": foreign_vault.name}, **HTMX).status_code == 404, url
    assert Vault.objects.filter(pk=foreign_vault.pk).exists()


def test_guessed_ids_are_404(alice, db):
    assert alice.get("/regions/cn-hangzhou/vaults/v-00000000000000000000/").status_code == 404


def test_lists_never_show_another_accounts_vaults(alice, foreign_vault):
    body = alice.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert foreign_vault.id not in body and foreign_vault.name not in body


def test_a_user_of_two_accounts_switches_between_them(client, account, other_account, make_vault, foreign_vault):
    from console.services import add_member

    both = make_user("bob")
    add_member(actor=None, account=account, user=both)
    add_member(actor=None, account=other_account, user=both)
    client.force_login(both)
    mine = make_vault("mine")
    assert ">mine<" in client.get("/regions/cn-hangzhou/vaults/").content.decode()
    assert client.get(f"/regions/cn-hangzhou/vaults/{foreign_vault.id}/").status_code == 404
    client.post("/account/switch/", {"account": other_account.slug})
    assert client.get(f"/regions/cn-hangzhou/vaults/{foreign_vault.id}/").status_code == 200
    assert client.get(f"/regions/cn-hangzhou/vaults/{mine.id}/").status_code == 404


def test_switching_to_an_account_one_is_not_member_of_is_refused(alice, other_account):
    assert alice.post("/account/switch/", {"account": other_account.slug}).status_code == 400


def test_user_without_account_sees_no_vaults(client, db, make_vault):
    make_vault("someone-elses")
    client.force_login(make_user("nobody"))
    response = client.get("/regions/cn-hangzhou/vaults/")
    assert response.status_code == 403 and "someone-elses" not in response.content.decode()


def test_admin_for_non_superuser_staff_is_scoped_to_their_accounts(client, account, foreign_vault, make_vault):
    from django.contrib.auth.models import Permission

    from console.services import add_member

    staff = make_user("operator", staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["vaults", "console"]))
    add_member(actor=None, account=account, user=staff)
    client.force_login(staff)
    mine = make_vault("mine")
    listing = client.get("/admin/vaults/vault/").content.decode()
    assert mine.id in listing and foreign_vault.id not in listing
    assert client.get(f"/admin/vaults/vault/{mine.id}/change/").status_code == 200
    for suffix in ["change/", "delete/", "history/"]:
        assert client.get(f"/admin/vaults/vault/{foreign_vault.id}/{suffix}").status_code == 404, suffix
    response = client.post(f"/admin/vaults/vault/{foreign_vault.id}/delete/", {"post": "yes"})
    assert response.status_code == 404
    assert Vault.objects.filter(pk=foreign_vault.pk).exists()
    audit = client.get("/admin/console/auditlog/").content.decode()
    assert foreign_vault.id not in audit
