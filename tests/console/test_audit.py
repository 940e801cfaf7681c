"""Rule A3: every state-changing action of the console's own services is audited, refusals included."""

import pytest
from django.core.exceptions import ValidationError

from console import services
from console.models import AuditLog, Region


def refusals(action):
    return AuditLog.objects.filter(action=action, outcome=AuditLog.Outcome.REFUSED)


def test_refused_account_group_region_and_rename_actions_are_audited(account, region):
    with pytest.raises(ValidationError):
        services.create_account(actor=None, slug=account.slug, name="Again")
    with pytest.raises(ValidationError):
        services.create_resource_group(actor=None, account=account, name="")
    with pytest.raises(ValidationError):
        services.rename_account(actor=None, account=account, name="  ")
    changed = Region.objects.get(code="cn-hangzhou")
    changed.code = ""  # not a valid code: full_clean refuses it
    with pytest.raises(ValidationError):
        services.save_region(actor=None, region=changed)
    for action in ("create_account", "create_resource_group", "rename_account", "update_region"):
        assert refusals(action).count() == 1, action
    assert refusals("create_account").get().object_id == account.slug
    assert Region.objects.filter(code="cn-hangzhou").exists()  # the refused change left nothing behind
    group = services.create_resource_group(actor=None, account=account, name="ops")
    assert AuditLog.objects.filter(action="create_resource_group", outcome="success", object_id=str(group.pk)).exists()


def test_a_user_who_is_a_member_or_acted_is_deactivated_not_deleted(admin_client, user, account):
    # rule A3: deleting the user would drop memberships unaudited and rewrite audit rows
    from django.contrib.auth import get_user_model
    from django.db.models import ProtectedError

    from console.models import Membership

    url = f"/admin/auth/user/{user.pk}/delete/"
    assert "Cannot delete user" in admin_client.get(url).content.decode()
    with pytest.raises(ProtectedError):
        user.delete()
    services.remove_member(actor=None, membership=Membership.objects.get(user=user))
    AuditLog.objects.create(actor=user, actor_name=user.username, object_type="test", action="acted")
    with pytest.raises(ProtectedError):
        user.delete()
    stranger = get_user_model().objects.create_user(username="stranger", password="pw-stranger")
    stranger.delete()  # nothing refers to a user who never joined nor acted
