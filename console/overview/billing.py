"""Usage and charges of an account in a region, per vault and per day (rules B1-B3).

Storage is billed on each day's largest Storage Vault Data Size (a day is 1/days-in-month
of the GB-month price); cross-region replication traffic on the bytes sent, in the source
vault's region; Internet outbound traffic on the bytes a restore sent to an on-premises
target over the Internet (restores from a Replication Target vault into its region are
free). Prices are the region's (admin -> Regions); GB is 10^9 bytes.
"""

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone

from replication.models import CrossRegionTraffic
from restore.models import RestoreJob
from vaults.models import StorageUsage

GB = Decimal(10**9)
CENT = Decimal("0.0001")


class BadMonth(ValueError):
    pass


def parse_month(text, today=None):
    """'YYYY-MM' -> the first day of that month; empty -> this month."""
    today = today or timezone.now().date()
    if not text:
        return today.replace(day=1)
    try:
        year, month = (int(part) for part in text.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise BadMonth(f"{text!r} is not a month: use YYYY-MM, e.g. {today:%Y-%m}.") from None
    if not date.min.year < year < date.max.year:  # the month before and after must exist too
        raise BadMonth(f"{text!r} is outside the calendar this console bills: use a year from 2 to 9998.")
    return first


@dataclass
class Line:
    """Usage and charges of one vault, or of one day, or of the whole month.

    Usage is added as bytes; the charges are worked out once from a line's bytes (`price`),
    so a day, a vault and the month are each charged on what they used, not on rounded parts.
    """

    label: str = ""
    vault_id: str | None = None  # None once the vault is deleted (its usage stays billed)
    storage_bytes: int = 0  # a day: the sum of the vaults' peaks; a vault or the month: byte-days
    storage_charge: Decimal = Decimal(0)
    traffic_bytes: int = 0
    traffic_charge: Decimal = Decimal(0)
    internet_bytes: int = 0
    internet_charge: Decimal = Decimal(0)
    gb_months: Decimal = Decimal(0)  # storage_bytes as GB-months (vaults and the month)

    @property
    def total(self):
        return self.storage_charge + self.traffic_charge + self.internet_charge

    def add(self, kind, amount):
        setattr(self, f"{kind}_bytes", getattr(self, f"{kind}_bytes") + amount)

    def price(self, region, days_in_month):
        """The charges of the bytes added (rules B1, B2): storage per GB-month (a day is 1/days of it)."""
        self.storage_charge = _charge(self.storage_bytes, region.storage_price / days_in_month)
        self.traffic_charge = _charge(self.traffic_bytes, region.replication_price)
        self.internet_charge = _charge(self.internet_bytes, region.internet_price)
        self.gb_months = (Decimal(self.storage_bytes) / GB / days_in_month).quantize(CENT)


def _charge(amount, price_per_gb):
    return (Decimal(amount) / GB * price_per_gb).quantize(Decimal("0.000001"))


@dataclass
class MonthUsage:
    region: object
    month: date
    days_in_month: int
    currency: str
    vaults: list = field(default_factory=list)
    days: list = field(default_factory=list)
    total: Line = field(default_factory=Line)

    @property
    def previous(self):
        return (self.month - timedelta(days=1)).replace(day=1)

    @property
    def next(self):
        """The next month, if it has begun."""
        following = self.month + timedelta(days=self.days_in_month)
        return following if following <= timezone.now().date() else None


def month_usage(account, region, month, today=None):
    """The account's usage and charges in `region` for the month that starts on `month`.

    Sums are taken by the database (a region of a thousand vaults has 30,000 storage days a month).
    """
    today = today or timezone.now().date()
    days_in_month = calendar.monthrange(month.year, month.month)[1]
    end = month + timedelta(days=days_in_month)
    last = min(end - timedelta(days=1), today)
    days = {month + timedelta(days=n): Line() for n in range((last - month).days + 1)}
    vaults = {}
    usage = MonthUsage(region, month, days_in_month, settings.BILLING_CURRENCY)

    def vault_line(vault_id, label):
        return vaults.setdefault(vault_id or label, Line(label=label, vault_id=vault_id))

    storage = StorageUsage.objects.filter(account=account, region=region, day__gte=month, day__lt=end)
    for day, amount in storage.values("day").annotate(amount=Sum("peak_bytes")).values_list("day", "amount"):
        if day in days:
            days[day].add("storage", amount)
    per_vault = (
        storage.filter(vault__isnull=False)
        .values("vault_id")
        .annotate(
            amount=Sum("peak_bytes"),
            name=Max("vault__name"),  # the vault's name now, whatever it was on each day
        )
    )
    for row in per_vault:
        vault_line(row["vault_id"], f"{row['name']} ({row['vault_id']})").add("storage", row["amount"])
    gone = storage.filter(vault__isnull=True).values("vault_label").annotate(amount=Sum("peak_bytes"))
    for row in gone:
        vault_line(None, row["vault_label"]).add("storage", row["amount"])

    traffic = CrossRegionTraffic.objects.filter(pair__account=account, region=region, day__gte=month, day__lt=end)
    for row in traffic.select_related("pair__source_vault"):
        pair = row.pair
        label = _label(pair.source_vault) or pair.source_label
        vault_line(pair.source_vault_id, label).add("traffic", row.bytes_sent)
        if row.day in days:
            days[row.day].add("traffic", row.bytes_sent)

    restores = RestoreJob.objects.filter(
        account=account,
        target__region=region,
        is_free=False,
        internet_bytes__gt=0,
        finished__date__gte=month,
        finished__date__lt=end,
    )
    for job in restores.select_related("vault"):
        label = _label(job.vault) or f"deleted vault (point {job.point_label})"
        vault_line(job.vault_id, label).add("internet", job.internet_bytes)
        if job.finished.date() in days:
            days[job.finished.date()].add("internet", job.internet_bytes)

    for line in vaults.values():
        for kind in ("storage", "traffic", "internet"):
            usage.total.add(kind, getattr(line, f"{kind}_bytes"))
    for line in [*vaults.values(), *days.values(), usage.total]:
        line.price(region, days_in_month)
    usage.days = [(day, line) for day, line in sorted(days.items(), reverse=True)]
    usage.vaults = sorted(vaults.values(), key=lambda line: (-line.total, line.label))
    return usage


def as_dict(usage):
    """The month's usage and charges as plain values (the `usage` command's JSON)."""

    def line(item, **extra):
        return {
            **extra,
            "storage_bytes": item.storage_bytes,
            "storage_charge": str(item.storage_charge),
            "traffic_bytes": item.traffic_bytes,
            "traffic_charge": str(item.traffic_charge),
            "internet_bytes": item.internet_bytes,
            "internet_charge": str(item.internet_charge),
            "total": str(item.total),
        }

    return {
        "region": usage.region.code,
        "month": f"{usage.month:%Y-%m}",
        "currency": usage.currency,
        "total": line(usage.total, storage_gb_months=str(usage.total.gb_months)),
        "vaults": [line(v, vault=v.vault_id, label=v.label, storage_gb_months=str(v.gb_months)) for v in usage.vaults],
        "days": [line(d, day=day.isoformat()) for day, d in usage.days],
    }


def _label(vault):
    return f"{vault.name} ({vault.pk})" if vault is not None else ""
