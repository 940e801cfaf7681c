"""Actions on accounts, members, resource groups and regions, and the audit writer.

Every state change of the product goes through a service function that writes
one audit row (rule A3); vault actions live in `vaults.services`.
"""

import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import audit
from .models import Account, AuditLog, FormSubmission, Membership, Region, ResourceGroup


def actor_label(actor):
    if actor is None:
        return "system"
    return actor.get_username()


def record_audit(
    *, actor, action, object_type, object_id="", account=None, region_code="", outcome="success", **detail
):
    """Rule A3: one append-only row per state-changing action, refusals included; signed as it is written and
    chained once its transaction commits (console/audit.py)."""
    row = AuditLog(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=actor_label(actor),
        account=account,
        account_name=account.name if account is not None else "",
        region_code=region_code,
        object_type=object_type,
        object_id=str(object_id),
        action=action,
        outcome=outcome,
        detail=detail,
    )
    audit.sign(row)
    row.save()
    transaction.on_commit(audit.seal, robust=True)  # a failed seal is retried by the periodic one
    return row


def record_refusal(*, actor, action, error, **kwargs):
    """Write a refused action to the audit log outside the refused transaction."""
    messages = error.messages if isinstance(error, ValidationError) else [str(error)]
    return record_audit(
        actor=actor, action=action, outcome=AuditLog.Outcome.REFUSED, reason="; ".join(messages), **kwargs
    )


class audit_refusals:
    """Context manager: a refusal (ValidationError) raised inside is audited once its transaction rolled back."""

    def __init__(self, action, **audit):
        self.action = action
        self.audit = audit

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, ValidationError):
            record_refusal(action=self.action, error=exc, **self.audit)
        return False


# -- one-time form tokens ---------------------------------------------------------------------------

SUBMISSION_FIELD = "submission"  # the hidden input every create form carries ({% submission_token %})
SUBMISSION_WAIT = 30  # seconds a repeat waits for the first submission's result
SUBMISSION_KEPT = timedelta(days=1)


def once(*, user, token, action, model, create):
    """Run a create action once per form submission: a repeat (double click, resent form) returns what the
    first one created instead of creating it again.

    `create()` makes and returns the object; without a token (commands, API) it simply runs.
    The claim is its own committed row, so a concurrent repeat sees it at once and waits for
    the first's result; a first that is refused gives its token back, and the repeat is tried.
    """
    if not token or not getattr(user, "is_authenticated", False):
        return create()
    token = str(token)[:64]
    try:
        with transaction.atomic():
            claim = FormSubmission.objects.create(user=user, token=token, action=action)
    except IntegrityError:
        return _result_of_first(user=user, token=token, action=action, model=model, create=create)
    try:
        made = create()
    except BaseException:
        FormSubmission.objects.filter(pk=claim.pk).delete()
        raise
    FormSubmission.objects.filter(pk=claim.pk).update(object_id=str(made.pk))
    FormSubmission.objects.filter(created__lt=timezone.now() - SUBMISSION_KEPT).delete()
    return made


def submitted_before(*, user, token, action, model):
    """What an earlier submission of this form made, or None: a repeat answers with it before its form is
    even checked (the choices the first one used may have gone with what it made)."""
    if not token or not getattr(user, "is_authenticated", False):
        return None
    first = FormSubmission.objects.filter(user=user, token=str(token)[:64], action=action).exclude(object_id="")
    first = first.first()
    return model.objects.filter(pk=first.object_id).first() if first is not None else None


def _result_of_first(*, user, token, action, model, create):
    deadline, pause = time.monotonic() + SUBMISSION_WAIT, 0.05
    while True:
        first = FormSubmission.objects.filter(user=user, token=token).first()
        if first is None:  # the first was refused: this one is handled on its own
            return once(user=user, token=token, action=action, model=model, create=create)
        if first.action != action:
            raise ValidationError("This form was already used for something else: reload the page.")
        if first.object_id:
            made = model.objects.filter(pk=first.object_id).first()
            if made is None:
                raise ValidationError("What this form created no longer exists: reload the page.")
            return made
        if first.created < timezone.now() - timedelta(seconds=SUBMISSION_WAIT):
            # the first's process died between its claim and its result: its claim is taken over
            FormSubmission.objects.filter(pk=first.pk, object_id="").delete()
            continue
        if time.monotonic() > deadline:
            raise ValidationError("This form is still being handled: reload the page in a moment to see it.")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def audit_lockout(sender=None, *, request=None, username=None, ip_address=None, **kwargs):
    """Rule A3: logins paused after too many wrong passwords, for a user or a client address (django-axes)."""
    record_audit(
        actor=None,  # nobody is logged in: the username tried is the object
        action="login",
        object_type="user",
        object_id=username or "",
        outcome=AuditLog.Outcome.REFUSED,
        reason="locked out after too many failed logins",
        ip_address=ip_address or "",
    )


def create_account(*, actor, slug, name):
    """Rule A2: an account comes with its default resource group."""
    with audit_refusals("create_account", actor=actor, object_type="account", object_id=slug), transaction.atomic():
        if Account.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"An account named {slug!r} already exists."})
        account = Account.objects.create(slug=slug, name=name)
        ResourceGroup.objects.create(account=account, name=ResourceGroup.DEFAULT_NAME, is_default=True)
        record_audit(actor=actor, action="create_account", object_type="account", object_id=account.pk, account=account)
    return account


@transaction.atomic
def add_member(*, actor, account, user, role=Membership.Role.ADMIN):
    membership, created = Membership.objects.get_or_create(user=user, account=account, defaults={"role": role})
    if created:
        record_audit(
            actor=actor,
            action="add_member",
            object_type="membership",
            object_id=membership.pk,
            account=account,
            user=user.get_username(),
        )
    return membership


@transaction.atomic
def remove_member(*, actor, membership):
    record_audit(
        actor=actor,
        action="remove_member",
        object_type="membership",
        object_id=membership.pk,
        account=membership.account,
        user=membership.user.get_username(),
    )
    membership.delete()


def create_resource_group(*, actor, account, name):
    name = (name or "").strip()
    with (
        audit_refusals("create_resource_group", actor=actor, object_type="resource_group", account=account),
        transaction.atomic(),
    ):
        if not name:
            raise ValidationError({"name": "Enter a resource group name."})
        if ResourceGroup.objects.filter(account=account, name=name).exists():
            raise ValidationError({"name": f"The resource group {name!r} already exists."})
        group = ResourceGroup.objects.create(account=account, name=name)
        record_audit(
            actor=actor,
            action="create_resource_group",
            object_type="resource_group",
            object_id=group.pk,
            account=account,
            name=name,
        )
    return group


REGION_FIELDS = (
    "code",
    "name",
    "supports_zrs",
    "supports_cross_region",
    "is_enabled",
    "position",
    "store_backend",
    "store_location",
    "store_endpoint_url",
    "storage_price",
    "replication_price",
    "internet_price",
)


def save_region(*, actor, region):
    """Add a region, or disable, rename or re-point the storage of one (rule G2)."""
    action = "add_region" if region.pk is None else "update_region"
    with audit_refusals(action, actor=actor, object_type="region", object_id=region.code), transaction.atomic():
        if region.pk is not None:
            old = Region.objects.select_for_update().get(pk=region.pk)
            if old.code != region.code and old.vaults.exists():
                raise ValidationError({"code": "A region that holds vaults cannot change its code."})
            changed = {f: getattr(region, f) for f in REGION_FIELDS if getattr(old, f) != getattr(region, f)}
        else:
            changed = {f: getattr(region, f) for f in REGION_FIELDS}
        region.full_clean()
        region.save()
        record_audit(
            actor=actor,
            action=action,
            object_type="region",
            object_id=region.code,
            region_code=region.code,
            changed=changed,
        )
    return region


def get_user(username):
    return get_user_model().objects.get(username=username)


def rename_account(*, actor, account, name):
    name = (name or "").strip()
    with (
        audit_refusals("rename_account", actor=actor, object_type="account", object_id=account.pk, account=account),
        transaction.atomic(),
    ):
        if not name:
            raise ValidationError({"name": "Enter the account's name."})
        if name != Account.objects.get(pk=account.pk).name:
            account.name = name
            account.save(update_fields=["name"])
            record_audit(
                actor=actor,
                action="rename_account",
                object_type="account",
                object_id=account.pk,
                account=account,
                name=name,
            )
    return account
