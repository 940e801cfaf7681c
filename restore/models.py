"""Restore targets (the prepared resources of a region) and restore jobs."""

from django.db import models

from console.models import Account, Job, JobProgress, Region
from vaults.models import BackupPoint, SourceType, Vault


class TargetKind(models.TextChoices):
    """Rule S2: one kind of prepared resource per data source."""

    ECS_INSTANCE = "ecs-instance", "ECS instance"
    OSS_BUCKET = "oss-bucket", "OSS bucket"
    NAS = "nas", "NAS file system"
    TABLESTORE = "tablestore", "Tablestore instance"
    CPFS = "cpfs", "CPFS file system"
    SAP_HANA = "sap-hana", "SAP HANA instance (registered)"
    ON_PREMISES_NAS = "on-premises-nas", "On-premises NAS with a backup client"
    LOCAL_SERVER = "local-server", "Local server restore folder with a backup client"


# Rule S2: which kind of target a point of each data source type restores to.
KIND_FOR_SOURCE = {
    SourceType.ECS_FILE: TargetKind.ECS_INSTANCE,
    SourceType.ECS_INSTANCE: TargetKind.ECS_INSTANCE,
    SourceType.OSS: TargetKind.OSS_BUCKET,
    SourceType.NAS: TargetKind.NAS,
    SourceType.TABLESTORE: TargetKind.TABLESTORE,
    SourceType.CPFS: TargetKind.CPFS,
    SourceType.SAP_HANA: TargetKind.SAP_HANA,
    SourceType.ON_PREMISES_NAS: TargetKind.ON_PREMISES_NAS,
    SourceType.ON_PREMISES_FILE: TargetKind.LOCAL_SERVER,
    SourceType.VMWARE_VM: TargetKind.LOCAL_SERVER,
}
ON_PREMISES = {TargetKind.ON_PREMISES_NAS, TargetKind.LOCAL_SERVER}


class Network(models.TextChoices):
    INTERNET = "internet", "Internet"
    VPN = "vpn", "VPN"
    LEASED_LINE = "leased-line", "Leased line"


class RestoreTarget(models.Model):
    """A prepared resource: a directory the worker writes, or a bucket (and prefix) of the region."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="restore_targets")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="restore_targets")
    kind = models.CharField(max_length=24, choices=TargetKind.choices)
    name = models.CharField(max_length=64)
    location = models.CharField(max_length=1024, help_text="Directory, or the bucket for an OSS bucket.")
    prefix = models.CharField(max_length=1024, blank=True)
    network = models.CharField(
        max_length=16,
        choices=Network.choices,
        default=Network.INTERNET,
        help_text="How an on-premises target is reached (billing, rule B2).",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["account", "region", "name"], name="unique_restore_target")]

    def __str__(self):
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def is_bucket(self):
        return self.kind == TargetKind.OSS_BUCKET

    @property
    def is_on_premises(self):
        return self.kind in ON_PREMISES

    @property
    def sends_over_internet(self):
        """An on-premises target reached over the Internet: what a restore writes there is outbound traffic (B2)."""
        return self.is_on_premises and self.network == Network.INTERNET


class Existing(models.TextChoices):
    SKIP = "skip", "Skip existing files"
    OVERWRITE = "overwrite", "Overwrite existing files"
    FAIL = "fail", "Fail if a file exists"


class OnDamage(models.TextChoices):
    FAIL = "fail", "Fail the restore"
    INTACT = "intact", "Restore what is intact (damaged files are listed in the report)"


class RestoreJob(JobProgress, Job):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="restore_jobs")
    vault = models.ForeignKey(Vault, null=True, on_delete=models.SET_NULL, related_name="restore_jobs")
    point = models.ForeignKey(BackupPoint, null=True, on_delete=models.SET_NULL, related_name="restore_jobs")
    point_label = models.CharField(max_length=32)
    target = models.ForeignKey(RestoreTarget, on_delete=models.PROTECT, related_name="jobs")
    sub_path = models.CharField(max_length=1024, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="Only these paths (empty: all).")
    existing = models.CharField(max_length=16, choices=Existing.choices, default=Existing.FAIL)
    on_damage = models.CharField(
        max_length=16,
        choices=OnDamage.choices,
        default=OnDamage.FAIL,
        help_text="A file whose backup data is damaged: the restore fails, or it is left out and listed.",
    )
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    files_skipped = models.PositiveIntegerField(default=0)
    files_verified = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)
    internet_bytes = models.BigIntegerField(default=0, help_text="Outbound Internet traffic, billed (rule B2).")
    is_free = models.BooleanField(default=False, help_text="From a replication target into its region (rule B2).")
    report = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        indexes = [models.Index(fields=["account", "-created"], name="restore_job_account_newest")]

    def __str__(self):
        return f"restore job {self.pk} ({self.status})"
