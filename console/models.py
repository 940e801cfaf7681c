"""Tenancy (accounts, members, resource groups), regions and the audit log.

Vaults and their keys live in `vaults`; this app holds what every page of the
console is scoped by.
"""

from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class Account(models.Model):
    """Rule A1: the owner of all data; users reach it through memberships."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=128)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="The zone new backup policies' schedules are in (IANA, e.g. Asia/Shanghai).",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        OPERATOR = "operator", "Operator"

    # PROTECT: a member leaves through remove_member (audited), not by a user row deleted under it
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="one_membership_per_user_account")]

    def __str__(self):
        return f"{self.user} in {self.account}"


class ResourceGroup(models.Model):
    """Rule A2: every vault is in exactly one group; each account has a default."""

    DEFAULT_NAME = "default"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="resource_groups")
    name = models.CharField(max_length=64)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="unique_resource_group_name"),
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(is_default=True), name="one_default_resource_group"
            ),
        ]

    def __str__(self):
        return self.name


def price_field(verbose_name, default, help_text=""):
    return models.DecimalField(
        verbose_name, max_digits=12, decimal_places=6, default=Decimal(default), help_text=help_text
    )


class Region(models.Model):
    """Rule G1: a code, a display name, an object store of its own, two flags."""

    class StoreBackend(models.TextChoices):
        DEFAULT = "", "Deployment default"
        LOCAL = "local", "Local directory"
        S3 = "s3", "S3-compatible bucket"

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    supports_zrs = models.BooleanField("supports zone-redundant storage", default=False)
    supports_cross_region = models.BooleanField("supports cross-region backup", default=True)
    is_enabled = models.BooleanField("enabled", default=True)
    position = models.PositiveIntegerField(default=100)
    store_backend = models.CharField(max_length=8, choices=StoreBackend.choices, default="", blank=True)
    store_location = models.CharField(
        max_length=255, blank=True, help_text="Directory (local) or bucket (S3); empty for the deployment default."
    )
    store_endpoint_url = models.CharField(
        max_length=255, blank=True, help_text="S3 endpoint of this region; empty for the deployment default."
    )
    # Rule B3: prices are configuration, per region, in settings.BILLING_CURRENCY.
    storage_price = price_field("storage price per GB-month", "0.02")
    replication_price = price_field(
        "cross-region replication traffic price per GB", "0.05", "Billed in the source vault's region."
    )
    internet_price = price_field(
        "Internet outbound traffic price per GB", "0.09", "Restores to on-premises targets over the Internet."
    )

    class Meta:
        ordering = ["position", "code"]

    def __str__(self):
        return f"{self.name} ({self.code})"

    @property
    def new_work_refusal(self):
        """Why nothing new may start in this region, or None (rule G2: operators can disable a region).

        A disabled region stops new work (vaults, backups, replication to or from it), but its
        vaults stay visible, restorable and deletable: one may hold the only copy left.
        """
        if self.is_enabled:
            return None
        return f"{self.name} is disabled by the operator: nothing new starts there until it is enabled again."

    @property
    def redundancy(self):
        """Rule V3: the system picks ZRS where the region supports it."""
        return "ZRS" if self.supports_zrs else "LRS"


class AuditLog(models.Model):
    """Rule A3: append-only; rows are written by services and never changed, and chained so that an edited,
    inserted or removed row shows (console/audit.py): `mac` is set as the row is written, `seq` and `chain`
    once, by the sealer, just after its transaction commits."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    created = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    # PROTECT: the log is append-only, so a user who acted is deactivated, never deleted (rule A3)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_name = models.CharField(max_length=150)
    # the account's id and name as they were: deleting an account rewrites no row (rule A3, T4)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    account_name = models.CharField(max_length=128, blank=True)
    region_code = models.CharField(max_length=32, blank=True)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)  # prices are Decimals
    # random and unique, among the values the row's HMAC covers: a copy of a row cannot be added again
    nonce = models.CharField(max_length=32, null=True, blank=True, unique=True, editable=False)
    # the row's HMAC over its own values, by the service that wrote it: a row written otherwise has none
    mac = models.CharField(max_length=64, blank=True, editable=False)
    # its place in the chain and the HMAC over it and the previous row's chain value (console/audit.py)
    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    chain = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["account", "-created"])]

    def __str__(self):
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_id} {self.outcome}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only.")


class WorkerHeartbeat(models.Model):
    """When each Celery worker (by node name, e.g. `celery@host`) was last seen alive (console/workers.py)."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField(db_index=True)  # the console reads the latest one on every page

    def __str__(self):
        return f"{self.hostname} {self.last_seen:%Y-%m-%d %H:%M:%S}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Job(models.Model):
    """What every kind of background job has (backup, restore, verification): its lifecycle is `console.jobs`.

    `attempt` names the current claim: progress, finishing and committing present it, so an
    attempt whose worker was given up for lost cannot finish later.
    """

    Status = JobStatus
    ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(
        null=True, blank=True, help_text="Queued: when its message was last re-sent. Running: its last sign of life."
    )
    finished = models.DateTimeField(null=True, blank=True)
    attempt = models.CharField(max_length=32, blank=True, editable=False)

    class Meta:
        abstract = True
        ordering = ["-created"]

    @property
    def is_active(self):
        return self.status in self.ACTIVE


class JobProgress:
    """Progress figures of a job with bytes_done and bytes_total."""

    @property
    def percent(self):
        if self.status == JobStatus.SUCCEEDED:
            return 100
        return min(99, int(100 * self.bytes_done / self.bytes_total)) if self.bytes_total else 0

    @property
    def rate(self):
        """Bytes per second so far."""
        if not self.started:
            return 0
        end = self.finished or timezone.now()
        return self.bytes_done / max((end - self.started).total_seconds(), 1e-3)

    @property
    def eta_seconds(self):
        if not self.is_active or not self.rate:
            return None
        return max(0, (self.bytes_total - self.bytes_done) / self.rate)


class FormSubmission(models.Model):
    """One submission of a create form (its one-time token): a repeat of it answers with what the first made.

    A double click or a resent form carries the same token; the unique key makes the second
    wait for, then reuse, the first's result instead of creating a second job or vault.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True, help_text="What the first submission created.")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "token"], name="one_submission_per_token")]

    def __str__(self):
        return f"{self.action} {self.token}"
