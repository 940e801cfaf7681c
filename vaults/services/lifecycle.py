"""Points over time: retention and expiry (P4), archiving (P5), backup lock (L1), repacking.

Expiry is the one path that may delete a point under backup lock, and only once
it has expired. Archiving moves the chunks only archived points need into
archive-tier packs; what a standard point still shares stays where it is.
"""

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from console.services import audit_refusals, record_audit

from ..models import BackupPoint, Chunk, Tier, Vault, VaultType
from .gc import collect_garbage, remove_point, rewrite_chunks
from .hooks import EXPIRY_HOLDS, LIFECYCLE_GUARDS, LOCK_GUARDS, POINT_ARCHIVED, RETENTION_CHANGED, points_edit_refusal

log = logging.getLogger(__name__)

BRING_BACK_DAYS = 7


def set_point_retention(*, actor, point, expires):
    """Change when a point expires; under backup lock it can only be extended (rule L1)."""
    vault = point.vault
    with audit_refusals(
        "set_point_retention",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="backup_point",
        object_id=point.id,
    ):
        with transaction.atomic():
            locked = BackupPoint.objects.select_for_update().select_related("vault").get(pk=point.pk)
            if reason := points_edit_refusal(locked.vault):
                raise ValidationError(reason)
            now = timezone.now()
            if expires is not None and expires <= now:
                raise ValidationError({"expires": "The new expiry must be in the future."})
            shortens = expires is not None and (locked.expires is None or expires < locked.expires)
            if locked.vault.backup_lock and shortens:
                raise ValidationError("Backup lock is on: a point's retention can be extended, never shortened.")
            previous = locked.expires
            locked.expires = expires
            locked.save(update_fields=["expires"])
            for hook in RETENTION_CHANGED:
                hook(locked)
            record_audit(
                actor=actor,
                action="set_point_retention",
                object_type="backup_point",
                object_id=locked.id,
                account=vault.account,
                region_code=vault.region.code,
                before=previous.isoformat() if previous else None,
                after=expires.isoformat() if expires else None,
            )
    return locked


def lock_refusal(vault):
    """Why a backup lock cannot be turned on for this vault, or None (rule L1)."""
    if vault.vault_type not in (VaultType.GENERAL, VaultType.REPLICATION_TARGET):
        return "Backup lock is available for General Backup vaults and standalone replication target vaults."
    for guard in LOCK_GUARDS:
        reason = guard(vault)
        if reason:
            return reason
    return None


PERIODS = (("weekly", "week"), ("monthly", "month"), ("yearly", "year"))


def kept_by(point):
    """Why a point past its expiry is kept (a sentence), or None (rules P4, C3).

    A point a policy made keeps that policy's rules as they were: "retain at least one version" keeps the
    newest point of the policy and source, and a long-term rule keeps the first point of each of the last W
    weeks, M months or Y years (calendar periods in the policy's time zone, this one counted) that have one.
    Other points follow their source's "retain at least one version".
    """
    rules = point.rules
    if not rules:
        source = point.source
        if source is not None and source.retain_at_least_one and _newest_of(point, source=source):
            return "the newest point of its source (retain at least one version)"
        return None
    made_by = f"policy {rules.get('name') or rules.get('policy')}"
    if rules.get("retain_at_least_one") and _newest_of(point, source=point.source_id, by_policy=point.by_policy):
        return f"the newest point of {made_by} for its source (retain at least one version)"
    tz = ZoneInfo(rules.get("time_zone") or "UTC")
    now = timezone.now().astimezone(tz)
    created = point.created.astimezone(tz)
    for rule, period in PERIODS:
        keep = rules.get(f"keep_{rule}") or 0
        if keep and _periods_back(period, created, now) < keep and _first_of_period(point, period, created, tz):
            return f"the first point of its {period} ({made_by}: keep {keep} {period}s)"
    return None


def _newest_of(point, **group):
    newest = BackupPoint.objects.filter(vault=point.vault_id, **group).order_by("-created", "-id").first()
    return newest is not None and newest.pk == point.pk


def _period_start(period, moment):
    day = moment.date()
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if period == "month" else day.replace(month=1, day=1)


def _periods_back(period, then, now):
    if period == "week":
        return (_period_start("week", now) - _period_start("week", then)).days // 7
    if period == "month":
        return (now.year - then.year) * 12 + now.month - then.month
    return now.year - then.year


def _first_of_period(point, period, created, tz):
    start = _period_start(period, created)
    begins = datetime(start.year, start.month, start.day, tzinfo=tz)
    earlier = BackupPoint.objects.filter(
        vault=point.vault_id, source=point.source_id, by_policy=point.by_policy, created__gte=begins
    ).filter(Q(created__lt=point.created) | Q(created=point.created, id__lt=point.id))
    return not earlier.exists()


def expire_points():
    """Delete expired points (the lock allows this path only), then the data no point needs.

    Expired by the database's clock, the one its guard of locked points reads (rule T4): the task takes no
    time from its caller, so nobody can have it expire points early."""
    touched, expired = set(), []
    for point in BackupPoint.objects.filter(expires__lte=Now()).select_related(
        "vault__region", "vault__account", "source"
    ):
        if kept_by(point) or any(hold(point) for hold in EXPIRY_HOLDS):
            continue
        try:
            with transaction.atomic():
                locked = BackupPoint.objects.select_for_update().filter(pk=point.pk, expires__lte=Now()).first()
                if locked is None:
                    continue
                remove_point(locked)
                record_audit(
                    actor=None,
                    action="expire_point",
                    object_type="backup_point",
                    object_id=point.id,
                    account=point.vault.account,
                    region_code=point.vault.region.code,
                    vault=point.vault_id,
                    expired=point.expires.isoformat(),
                )
        except IntegrityError as exc:  # the database's guard (rule T4): locked and not expired by its clock
            log.warning("Expiry of %s refused by the database: %s", point.id, exc)
            continue
        expired.append(point.id)
        touched.add(point.vault_id)
    for vault_id in touched:
        collect_garbage(vault_id)
    return expired


def set_archive_after_days(*, actor, vault, days):
    """Rule P5: automatic archiving after `days` (None turns it off)."""
    with audit_refusals(
        "set_archive_after_days",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="vault",
        object_id=vault.id,
    ):
        if days is not None and not (1 <= days <= 36500):
            raise ValidationError({"archive_after_days": "Archive after 1 to 36500 days, or never."})
        if reason := archiving_refusal(vault):
            raise ValidationError(reason)
        with transaction.atomic():
            Vault.objects.filter(pk=vault.pk).update(archive_after_days=days)
            record_audit(
                actor=actor,
                action="set_archive_after_days",
                object_type="vault",
                object_id=vault.id,
                account=vault.account,
                region_code=vault.region.code,
                days=days,
            )
    vault.archive_after_days = days
    return vault


def archiving_refusal(vault):
    """Why this vault's automatic archiving cannot be set by hand, or None."""
    for guard in LIFECYCLE_GUARDS:
        if reason := guard(vault):
            return reason
    return None


def archive_due_points(now=None):
    """Move every point past its archiving age to the archive tier (rule P5): a policy's point by its policy's
    archive rule (C3), any other by its vault's automatic archiving."""
    now = now or timezone.now()
    standard = BackupPoint.objects.filter(tier=Tier.STANDARD).filter(
        Q(standard_until__isnull=True) | Q(standard_until__lte=now)
    )
    due = []
    for vault in Vault.objects.filter(archive_after_days__isnull=False):
        cutoff = now - timedelta(days=vault.archive_after_days)
        due += standard.filter(vault=vault, by_policy="", created__lte=cutoff)
    for point in standard.exclude(by_policy="").filter(rules__archive_after_days__isnull=False):
        if point.created <= now - timedelta(days=point.rules["archive_after_days"]):
            due.append(point)
    moved = []
    for point in sorted(due, key=lambda p: (p.vault_id, p.created)):
        if archive_point(BackupPoint.objects.select_related("vault__region", "vault__account").get(pk=point.pk)):
            moved.append(point.id)
    return moved


def archive_point(point):
    """Move a point to the archive tier: chunks no standard point needs go into archive packs."""
    vault = point.vault
    with transaction.atomic():
        locked = BackupPoint.objects.select_for_update().filter(pk=point.pk, tier=Tier.STANDARD).first()
        if locked is None:
            return None
        locked.tier = Tier.ARCHIVE
        locked.standard_until = None
        locked.save(update_fields=["tier", "standard_until"])
        still_standard = Chunk.objects.filter(pointchunk__point__vault=vault, pointchunk__point__tier=Tier.STANDARD)
        movable = Chunk.objects.filter(pointchunk__point=locked, pack__tier=Tier.STANDARD).exclude(
            pk__in=still_standard.values("pk")
        )
        rewrite_chunks(vault, movable, tier=Tier.ARCHIVE)
        record_audit(
            actor=None,
            action="archive_point",
            object_type="backup_point",
            object_id=locked.id,
            account=vault.account,
            region_code=vault.region.code,
            vault=vault.id,
        )
        for listener in POINT_ARCHIVED:
            transaction.on_commit(lambda listener=listener: listener(locked))
    collect_garbage(vault.pk)
    return locked


def bring_back_point(*, actor, point, days=BRING_BACK_DAYS):
    """An archived point returns to the standard tier (for restore and replication) for `days` days."""
    vault = point.vault
    with audit_refusals(
        "bring_back_point",
        actor=actor,
        account=vault.account,
        region_code=vault.region.code,
        object_type="backup_point",
        object_id=point.id,
    ):
        with transaction.atomic():
            locked = BackupPoint.objects.select_for_update().filter(pk=point.pk).first()
            if locked is None or locked.tier != Tier.ARCHIVE:
                raise ValidationError("Only an archived point can be brought back.")
            rewrite_chunks(
                vault, Chunk.objects.filter(pointchunk__point=locked, pack__tier=Tier.ARCHIVE), tier=Tier.STANDARD
            )
            locked.tier = Tier.STANDARD
            locked.standard_until = timezone.now() + timedelta(days=days)
            locked.save(update_fields=["tier", "standard_until"])
            record_audit(
                actor=actor,
                action="bring_back_point",
                object_type="backup_point",
                object_id=locked.id,
                account=vault.account,
                region_code=vault.region.code,
                days=days,
            )
    collect_garbage(vault.pk)
    return locked
