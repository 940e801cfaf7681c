"""The account switch's `next` stays on this site: another host or a `javascript:` URL goes to the console."""

import pytest

from console.services import add_member
from tests.conftest import make_user

VAULTS = "/regions/cn-hangzhou/vaults/"


@pytest.fixture
def member_of_both(client, account, other_account):
    both = make_user("bob")
    add_member(actor=None, account=account, user=both)
    add_member(actor=None, account=other_account, user=both)
    client.force_login(both)
    client.get(VAULTS)  # the region chosen last is the one to fall back to
    return client


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/phish",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "http://testserver.evil.example/",
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "",
    ],
)
def test_an_unsafe_next_goes_to_the_regions_storage_vaults_page(member_of_both, other_account, next_url):
    # rule A1 (the switch is the only account choice) and an open redirect closed
    response = member_of_both.post("/account/switch/", {"account": other_account.slug, "next": next_url})
    assert response.status_code == 302
    assert response["Location"] == VAULTS
    assert member_of_both.session["account"] == other_account.slug


def test_without_a_region_chosen_yet_it_falls_back_to_home(client, account, other_account):
    both = make_user("carol")
    add_member(actor=None, account=account, user=both)
    add_member(actor=None, account=other_account, user=both)
    client.force_login(both)
    response = client.post("/account/switch/", {"account": other_account.slug, "next": "//evil.example"})
    assert (response.status_code, response["Location"]) == (302, "/")


@pytest.mark.parametrize(
    "next_url", ["/regions/us-west-1/vaults/", "/regions/cn-hangzhou/backup-jobs/?page=2", "http://testserver/"]
)
def test_a_local_next_is_kept(member_of_both, other_account, next_url):
    response = member_of_both.post("/account/switch/", {"account": other_account.slug, "next": next_url})
    assert (response.status_code, response["Location"]) == (302, next_url)


def test_an_https_console_does_not_send_back_to_plain_http(member_of_both, other_account):
    response = member_of_both.post(
        "/account/switch/", {"account": other_account.slug, "next": "http://testserver/"}, secure=True
    )
    assert response["Location"] == VAULTS


def test_from_a_page_of_the_other_accounts_vault_it_lands_on_the_vault_list(
    member_of_both, account, other_account, make_vault
):
    # the vault is the account's left behind: its page would answer "not found" in the other one
    vault = make_vault("left-behind")
    page = f"/regions/cn-hangzhou/vaults/{vault.id}/"
    assert member_of_both.get(page).status_code == 200
    response = member_of_both.post("/account/switch/", {"account": other_account.slug, "next": page})
    assert (response.status_code, response["Location"]) == (302, VAULTS)
    assert member_of_both.get(VAULTS).status_code == 200


def test_a_page_not_found_says_so_in_the_console(member_of_both):
    response = member_of_both.get("/regions/cn-hangzhou/vaults/v-00000000000000000000/")
    assert response.status_code == 404
    assert b"Not found" in response.content and b'href="/"' in response.content and b"Log out" in response.content
