"""The replication admin: read-only, one "stop" action through the service, scoped to the user's accounts."""

import pytest
from django.contrib.auth.models import Permission

from console import services as console_services
from console.models import AuditLog
from replication import engine, services
from replication.models import CrossRegionTraffic, ReplicatedPoint, ReplicationPair
from tests.conftest import make_user
from tests.replication.conftest import create_target

PAIRS = "/admin/replication/replicationpair/"
COPIES = "/admin/replication/replicatedpoint/"
TRAFFIC = "/admin/replication/crossregiontraffic/"


@pytest.fixture
def admin_client(client, db):
    client.force_login(make_user("root", staff=True, superuser=True))
    return client


@pytest.fixture
def pair(source_vault, backup, lrs_region):
    backup(source_vault)
    started = services.start_replication(
        actor=None, source_vault=source_vault, destination_region=lrs_region, create=create_target()
    )
    return engine.sync_pair(started.id)


@pytest.fixture
def other_staff(client, other_account):
    """Staff of another account, allowed to view and stop replications in the admin."""
    staff = make_user("mallory-ops", staff=True)
    console_services.add_member(actor=None, account=other_account, user=staff)
    staff.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="replication",
            codename__in=[
                "view_replicationpair",
                "change_replicationpair",
                "delete_replicationpair",
                "view_replicatedpoint",
                "view_crossregiontraffic",
            ],
        )
    )
    client.force_login(staff)
    return client


def stop_action(client, pair_ids, confirm=False):
    data = {"action": "stop_replication", "_selected_action": pair_ids}
    if confirm:
        data["confirm"] = "yes"
    return client.post(PAIRS, data)


def test_pairs_copies_and_traffic_are_listed_and_shown(admin_client, pair):
    # rules R8, B1: operators see progress, copies and the bytes sent between regions
    listing = admin_client.get(PAIRS)
    assert listing.status_code == 200 and pair.id in listing.content.decode()
    detail = admin_client.get(f"{PAIRS}{pair.id}/change/")
    page = detail.content.decode()
    assert detail.status_code == 200 and pair.source_label in page and pair.target_label in page
    assert 'name="_save"' not in page  # read-only
    copy = ReplicatedPoint.objects.get(pair=pair)
    assert copy.source_point_id in admin_client.get(COPIES).content.decode()
    assert admin_client.get(f"{COPIES}{copy.pk}/change/").status_code == 200
    traffic = CrossRegionTraffic.objects.get(pair=pair)
    assert admin_client.get(TRAFFIC).status_code == 200
    assert admin_client.get(f"{TRAFFIC}{traffic.pk}/change/").status_code == 200


def test_nothing_is_added_changed_or_deleted_by_hand(admin_client, pair):
    # rules R9, R12: a pair and its copies change only through the services and the engine
    copy = ReplicatedPoint.objects.get(pair=pair)
    assert admin_client.get(f"{PAIRS}add/").status_code == 403
    response = admin_client.post(f"{PAIRS}{pair.id}/change/", {"state": "syncing", "bytes_sent": 0})
    assert response.status_code == 403
    assert admin_client.get(f"{PAIRS}{pair.id}/delete/").status_code == 403
    assert admin_client.post(f"{PAIRS}{pair.id}/delete/", {"post": "yes"}).status_code == 403
    bulk = admin_client.post(PAIRS, {"action": "delete_selected", "_selected_action": [pair.id], "post": "yes"})
    assert any("No action selected" in str(m) for m in bulk.wsgi_request._messages)
    assert admin_client.post(f"{COPIES}{copy.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"{COPIES}{copy.pk}/change/", {"state": "removed"}).status_code == 403
    assert admin_client.get(f"{COPIES}add/").status_code == 403
    assert "delete_selected" not in admin_client.get(PAIRS).content.decode()
    pair_before = pair
    pair = ReplicationPair.objects.get(pk=pair.pk)
    assert (pair.state, pair.bytes_sent) == ("running", pair_before.bytes_sent)
    copy.refresh_from_db()
    assert copy.state == "committed"


def test_stop_action_confirms_then_stops_through_the_service(admin_client, pair):
    # rules R12, A3: confirmation first, then stopped for good and audited
    confirmation = stop_action(admin_client, [pair.id])
    assert confirmation.status_code == 200
    assert "cannot be undone" in confirmation.content.decode() and pair.id in confirmation.content.decode()
    assert ReplicationPair.objects.get(pk=pair.pk).state == "running"

    done = stop_action(admin_client, [pair.id], confirm=True)
    assert done.status_code == 302
    pair.refresh_from_db()
    assert pair.state == "stopped" and pair.stopped is not None
    row = AuditLog.objects.get(action="stop_replication", object_id=pair.id)
    assert (row.actor_name, row.outcome, row.account) == ("root", "success", pair.account)

    # stopping again is refused by the service, with a message and an audited refusal
    again = stop_action(admin_client, [pair.id], confirm=True)
    assert again.status_code == 302
    messages = [str(m) for m in again.wsgi_request._messages]
    assert any("already stopped" in m for m in messages)
    assert AuditLog.objects.filter(action="stop_replication", object_id=pair.id, outcome="refused").count() == 1


def test_staff_of_another_account_cannot_see_or_stop_a_pair(other_staff, pair):
    # rule A1: guessed ids are a 404, the list hides the pair, the action does nothing
    assert other_staff.get(PAIRS).status_code == 200
    assert pair.id not in other_staff.get(PAIRS).content.decode()
    assert other_staff.get(f"{PAIRS}{pair.id}/change/").status_code == 404
    assert other_staff.get(f"{PAIRS}{pair.id}/history/").status_code == 404
    assert other_staff.get(f"{PAIRS}{pair.id}/delete/").status_code == 404
    copy = ReplicatedPoint.objects.get(pair=pair)
    assert other_staff.get(f"{COPIES}{copy.pk}/change/").status_code == 404
    traffic = CrossRegionTraffic.objects.get(pair=pair)
    assert other_staff.get(f"{TRAFFIC}{traffic.pk}/change/").status_code == 404
    stop_action(other_staff, [pair.id], confirm=True)
    assert ReplicationPair.objects.get(pk=pair.pk).state == "running"
    assert not AuditLog.objects.filter(action="stop_replication").exists()


def test_members_stop_their_own_pairs_but_view_only_staff_cannot(client, pair, account):
    # rules A1, R12: a member with the change permission stops; view permission alone shows no action
    staff = make_user("alice-ops", staff=True)
    console_services.add_member(actor=None, account=account, user=staff)
    staff.user_permissions.set(Permission.objects.filter(codename="view_replicationpair"))
    client.force_login(staff)
    assert client.get(f"{PAIRS}{pair.id}/change/").status_code == 200
    assert "stop_replication" not in client.get(PAIRS).content.decode()
    stop_action(client, [pair.id], confirm=True)
    assert ReplicationPair.objects.get(pk=pair.pk).state == "running"
    staff.user_permissions.add(Permission.objects.get(codename="change_replicationpair"))
    client.force_login(staff)
    stop_action(client, [pair.id], confirm=True)
    assert ReplicationPair.objects.get(pk=pair.pk).state == "stopped"
    assert AuditLog.objects.get(action="stop_replication", object_id=pair.id).actor_name == "alice-ops"
