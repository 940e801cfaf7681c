"""Login throttling: after a few wrong passwords for a user, or from one client address, even the right
password is refused for a while, the user is told until when, the lockout is audited, and an operator can
unlock from the command line. A removed member's session no longer reaches the account."""

import pytest
from django.core.management import call_command
from django.test import Client

from console.models import AuditLog
from console.services import remove_member
from tests.conftest import make_user


def log_in(client, username, password, address="127.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.fixture
def limit(settings):
    return settings.AXES_FAILURE_LIMIT


def test_the_right_password_is_refused_after_too_many_wrong_ones(client, user, limit):
    for _ in range(limit - 1):
        assert log_in(client, "alice", "guess").status_code == 200  # the form again, with its error
    assert log_in(client, "alice", "guess").status_code == 429  # the last one allowed: now paused
    locked = log_in(client, "alice", "pw-alice")
    assert locked.status_code == 429
    body = locked.content.decode()
    assert "Too many failed logins" in body and "Try again in 15m 00s" in body and "alice" in body
    assert "_auth_user_id" not in client.session
    rows = AuditLog.objects.filter(action="login", outcome="refused")  # each refused attempt while paused
    assert rows.count() == 2 and {(r.object_id, r.detail["ip_address"]) for r in rows} == {("alice", "127.0.0.1")}

    call_command("axes_reset_username", "alice")  # an operator unlocks
    assert log_in(client, "alice", "pw-alice").status_code == 302


def test_one_address_is_locked_out_whatever_names_it_tries(client, user, limit):
    for i in range(limit):
        log_in(client, f"nobody-{i}", "guess", address="127.0.0.9")
    assert log_in(client, "alice", "pw-alice", address="127.0.0.9").status_code == 429
    assert log_in(Client(), "alice", "pw-alice", address="127.0.0.10").status_code == 302  # not another address


def test_a_good_login_before_the_limit_starts_the_count_again(client, user, limit):
    for _ in range(limit - 1):
        log_in(client, "alice", "guess")
    assert log_in(client, "alice", "pw-alice").status_code == 302
    client.post("/logout/")
    for _ in range(limit - 1):
        log_in(client, "alice", "guess")
    assert log_in(client, "alice", "pw-alice").status_code == 302


def test_a_removed_member_reaches_the_account_no_more(client, account, user):
    other = make_user("bob")
    from console.services import add_member

    membership = add_member(actor=None, account=account, user=other)
    client.force_login(other)
    assert client.get("/regions/cn-hangzhou/vaults/").status_code == 200
    remove_member(actor=None, membership=membership)
    assert client.get("/regions/cn-hangzhou/vaults/").status_code == 403  # the same session, checked again
