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
