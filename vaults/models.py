"""Backup vaults and the KMS keys that can protect them.

Backup points, chunks and jobs (the data plane) will live here too; key
wrapping is in `vaults.dataplane.keys`, object stores in `vaults.dataplane.objectstore`.
"""

import secrets

from django.db import models

from console.models import Account, Job, JobProgress, JobStatus, Region, ResourceGroup

from .schedule import Schedule


def new_vault_id():
    return "v-" + secrets.token_hex(10)


class VaultType(models.TextChoices):
    """Rule V1."""

    GENERAL = "general", "General Backup"
    REPLICATION_TARGET = "replication-target", "Replication Target"
    ARCHIVE = "archive", "Archive"
    DATABASE = "database", "Database Backup"
    CONTAINER = "container", "Container Backup"
    OSS_TRIAL = "oss-trial", "OSS Backup (30-day free trial)"
    NAS_TRIAL = "nas-trial", "NAS Backup (30-day free trial)"
    TABLESTORE_TRIAL = "tablestore-trial", "Tablestore Backup (30-day free trial)"


class VaultStatus(models.TextChoices):
    """Rule V2."""

    INITIALIZING = "initializing", "Initializing"
    NORMAL = "normal", "Normal"
    ERROR = "error", "Error"
    UNKNOWN = "unknown", "Unknown"


class EncryptionMethod(models.TextChoices):
    """Rule V4."""

    CLOUD_BACKUP_MANAGED = "cloud-backup-managed", "Cloud Backup-managed"
    KMS = "kms", "KMS"


class KmsKey(models.Model):
    """A customer key in a region's KMS; only its id is kept here, never key material."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="kms_keys")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="kms_keys")
    key_id = models.CharField("KMS KeyId", max_length=128)
    alias = models.CharField(max_length=128)
    provider = models.CharField(max_length=16, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["alias"]
        verbose_name = "KMS key"
        constraints = [
            models.UniqueConstraint(fields=["region", "key_id"], name="unique_kms_key_id_per_region"),
            models.UniqueConstraint(fields=["account", "region", "alias"], name="unique_kms_alias"),
        ]

    def __str__(self):
        return f"{self.alias} ({self.key_id})"


class OssBucket(models.Model):
    """An OSS bucket of a region and the one account that may name it as a source or a target (rule T2).

    An operator assigns it (the service's own store credentials then serve it), or the account
    registers it with an access key of its own, kept only sealed under the master secret and
    used only for this bucket.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="oss_buckets")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="oss_buckets")
    name = models.CharField(max_length=63)
    access_key_id = models.CharField(max_length=128, blank=True, help_text="Empty: the service's own credentials.")
    sealed_secret = models.BinaryField(blank=True, default=b"", editable=False)
    assigned_by_operator = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "OSS bucket"
        constraints = [models.UniqueConstraint(fields=["region", "name"], name="one_owner_per_bucket")]

    def __str__(self):
        return f"{self.name} ({self.region_id})"


class Vault(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_vault_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="vaults")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="vaults")
    resource_group = models.ForeignKey(ResourceGroup, on_delete=models.PROTECT, related_name="vaults")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    vault_type = models.CharField("type", max_length=24, choices=VaultType.choices, default=VaultType.GENERAL)
    status = models.CharField(max_length=16, choices=VaultStatus.choices, default=VaultStatus.INITIALIZING)
    status_reason = models.CharField(max_length=500, blank=True)
    redundancy = models.CharField(max_length=3, editable=False)
    encryption_method = models.CharField(
        "Vault Encryption Method",
        max_length=24,
        choices=EncryptionMethod.choices,
        default=EncryptionMethod.CLOUD_BACKUP_MANAGED,
    )
    kms_key = models.ForeignKey(
        KmsKey, null=True, blank=True, on_delete=models.PROTECT, related_name="vaults", verbose_name="KMS KeyId"
    )
    wrapped_data_key = models.BinaryField(editable=False)
    wrapped_chunk_id_key = models.BinaryField(editable=False)
    data_size = models.BigIntegerField("Storage Vault Data Size", default=0)
    backup_lock = models.BooleanField(default=False)
    archive_after_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Automatic archiving (rule P5): move points to the archive tier at this age."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "region", "name"], name="unique_vault_name_per_region"),
            models.CheckConstraint(
                condition=models.Q(encryption_method="kms", kms_key__isnull=False)
                | models.Q(encryption_method="cloud-backup-managed", kms_key__isnull=True),
                name="kms_key_iff_kms_encryption",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def storage_prefix(self):
        """The vault's storage area inside its region's object store."""
        return f"vaults/{self.id}/"


class SourceType(models.TextChoices):
    """Rule P2: data source types."""

    ECS_FILE = "ecs-file", "ECS File"
    OSS = "oss", "OSS"
    ON_PREMISES_NAS = "on-premises-nas", "On-premises NAS"
    NAS = "nas", "Alibaba Cloud NAS"
    TABLESTORE = "tablestore", "Tablestore"
    CPFS = "cpfs", "CPFS"
    ON_PREMISES_FILE = "on-premises-file", "On-premises File"
    SAP_HANA = "sap-hana", "SAP HANA"
    ECS_INSTANCE = "ecs-instance", "ECS instance"
    VMWARE_VM = "vmware-vm", "VMware VM"


FILE_TREE_SOURCES = {
    SourceType.ECS_FILE,
    SourceType.NAS,
    SourceType.CPFS,
    SourceType.ON_PREMISES_NAS,
    SourceType.ON_PREMISES_FILE,
    SourceType.ECS_INSTANCE,
    SourceType.VMWARE_VM,
}
STREAM_SOURCES = {SourceType.TABLESTORE, SourceType.SAP_HANA}


def new_point_id():
    return "p-" + secrets.token_hex(10)


class BackupSource(models.Model):
    """What a backup reads: a directory, a bucket (and prefix) of the region's store, or an export."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="backup_sources")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="backup_sources")
    source_type = models.CharField(max_length=24, choices=SourceType.choices)
    name = models.CharField(max_length=64)
    path = models.CharField(max_length=1024, blank=True, help_text="Directory or export file, for non-OSS sources.")
    bucket = models.CharField(max_length=63, blank=True)
    prefix = models.CharField(max_length=1024, blank=True)
    retain_at_least_one = models.BooleanField("retain at least one version", default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "region", "name"], name="unique_backup_source_name"),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_source_type_display()})"

    @property
    def location(self):
        if self.source_type == SourceType.OSS:
            return f"oss://{self.bucket}/{self.prefix}"
        return self.path


class Tier(models.TextChoices):
    STANDARD = "standard", "Standard"
    ARCHIVE = "archive", "Archive"


class BackupPoint(models.Model):
    """Rule P1: one immutable, complete copy of a source; a row exists only once all its data is stored (P3)."""

    id = models.CharField(primary_key=True, max_length=32, default=new_point_id, editable=False)
    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="points")
    source = models.ForeignKey(BackupSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="points")
    source_type = models.CharField(max_length=24, choices=SourceType.choices)
    source_location = models.CharField(max_length=1024)
    created = models.DateTimeField(db_index=True)
    expires = models.DateTimeField(null=True, blank=True, db_index=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    standard_until = models.DateTimeField(
        null=True, blank=True, help_text="A point brought back from the archive stays in the standard tier until then."
    )
    files = models.PositiveIntegerField(default=0)
    size = models.BigIntegerField(default=0, help_text="Bytes of source data in the point.")
    stored_bytes = models.BigIntegerField(default=0, help_text="New bytes this point added to the vault.")
    manifest_key = models.CharField(max_length=255)
    manifest_size = models.BigIntegerField(default=0)
    chunks = models.ManyToManyField("Chunk", through="PointChunk", related_name="points")
    # rule C3: the policy that made the point (its id outlives the policy) and its rules as they were then
    by_policy = models.CharField(max_length=32, blank=True, db_index=True)
    rules = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["vault", "-created"], name="point_vault_newest")]

    def __str__(self):
        return self.id


class Pack(models.Model):
    """One object in the region's store holding many encrypted chunks (few requests per byte)."""

    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="packs")
    key = models.CharField(max_length=255)
    size = models.BigIntegerField()
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    is_garbage = models.BooleanField(default=False, help_text="No chunk needs it; its object is being deleted.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vault", "key"], name="unique_pack_key")]

    def __str__(self):
        return self.key


class Chunk(models.Model):
    """The chunk index: where each chunk of a vault lives, so size, GC and copy planning are queries."""

    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="chunk_index")
    chunk_id = models.BinaryField(max_length=32)
    pack = models.ForeignKey(Pack, on_delete=models.CASCADE, related_name="chunks")
    offset = models.BigIntegerField()
    length = models.IntegerField(help_text="Stored (compressed, encrypted) bytes.")
    raw_length = models.IntegerField(help_text="Plaintext bytes.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vault", "chunk_id"], name="unique_chunk_per_vault")]

    def __str__(self):
        return bytes(self.chunk_id).hex()


class PointChunk(models.Model):
    """A point's reference to a chunk: what garbage collection counts."""

    point = models.ForeignKey(BackupPoint, on_delete=models.CASCADE)
    chunk = models.ForeignKey(Chunk, on_delete=models.PROTECT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["point", "chunk"], name="unique_point_chunk")]

    def __str__(self):
        return f"{self.point_id} -> {self.chunk_id}"


def new_policy_id():
    return "po-" + secrets.token_hex(8)


class Policy(models.Model):
    """Rule C1: a backup policy of an account in a region: its backup rule (vault, schedule, retention) and the
    sources it backs up. Its schedule is vaults.schedule's, in the policy's own time zone."""

    id = models.CharField(primary_key=True, max_length=32, default=new_policy_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="policies")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="policies")
    name = models.CharField(max_length=64)
    vault = models.ForeignKey(Vault, on_delete=models.PROTECT, related_name="policies")
    time_zone = models.CharField(max_length=64, default="UTC")
    every = models.DurationField(null=True, blank=True, help_text="Every N minutes, hours or days from `start`...")
    start = models.DateTimeField(null=True, blank=True)
    weekdays = models.JSONField(default=list, blank=True, help_text="...or on these days (0 is Monday)...")
    times = models.JSONField(default=list, blank=True, help_text='...at these times of day ("02:00").')
    retention_days = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: kept forever.")
    retain_at_least_one = models.BooleanField("retain at least one version", default=False)
    keep_weekly = models.PositiveIntegerField(default=0, help_text="Keep the first point of each of the last W weeks.")
    keep_monthly = models.PositiveIntegerField(default=0)
    keep_yearly = models.PositiveIntegerField(default=0)
    archive_after_days = models.PositiveIntegerField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    next_run = models.DateTimeField(null=True, blank=True, db_index=True)
    sources = models.ManyToManyField(BackupSource, through="PolicySource", related_name="policies")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["account", "region", "name"], name="unique_policy_name")]
        verbose_name_plural = "policies"

    def __str__(self):
        return self.name

    @property
    def schedule(self):
        times = tuple(tuple(int(part) for part in t.split(":")) for t in self.times)
        return Schedule(
            zone=self.time_zone, every=self.every, start=self.start, weekdays=tuple(self.weekdays), times=times
        )


class PolicySource(models.Model):
    """A source bound to a policy (rule C1); a source may be bound to several policies, once to each."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="bindings")
    source = models.ForeignKey(BackupSource, on_delete=models.CASCADE, related_name="bindings")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "source"], name="unique_policy_source")]

    def __str__(self):
        return f"{self.source} in {self.policy}"


class PolicyRun(models.Model):
    """Rule C2: one run of a policy, scheduled or asked for; its backup jobs point at it."""

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        RUN_NOW = "run now", "Run now"

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The due time a scheduled run made up.")
    started = models.DateTimeField(auto_now_add=True)
    late_seconds = models.PositiveIntegerField(default=0, help_text="How long after its due time it ran, when late.")
    skipped = models.JSONField(default=list, blank=True, help_text="Sources not backed up by this run, and why.")
    rules = models.JSONField(
        default=dict, blank=True, help_text="The policy's rules as they were: its points keep them."
    )

    class Meta:
        ordering = ["-started", "-id"]

    def __str__(self):
        return f"{self.policy} run {self.pk}"


class BackupJob(JobProgress, Job):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="backup_jobs")
    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="backup_jobs")
    source = models.ForeignKey(BackupSource, on_delete=models.CASCADE, related_name="jobs")
    point = models.ForeignKey(BackupPoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    policy_run = models.ForeignKey(PolicyRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    fail_on_change = models.BooleanField(
        default=False, help_text="Fail the job when a file changes while it is read, instead of recording it."
    )
    warnings = models.JSONField(default=list, blank=True)
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_stored = models.BigIntegerField(default=0)

    class Meta(Job.Meta):
        indexes = [models.Index(fields=["account", "-created"], name="backup_job_account_newest")]

    def __str__(self):
        return f"backup job {self.pk} ({self.status})"


class VerifyRun(Job):
    """A read-back of every chunk of every point of a vault, and what it found (a run that read everything
    succeeded, whether or not it found damage: its report says which)."""

    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="verify_runs")
    report = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"verify {self.vault_id} {self.status}"

    @property
    def found_problems(self):
        return bool(self.report.get("problems"))

    @property
    def verdict(self):
        """What the run says, in the console's words."""
        if self.status == JobStatus.SUCCEEDED:
            return "Problems found" if self.found_problems else "No problems"
        return self.get_status_display()

    @property
    def percent(self):
        """Bytes read back of the bytes the vault's points hold, while it runs."""
        total = self.report.get("bytes_total") or 0
        return min(100, int(100 * self.report.get("bytes", 0) / total)) if total else 0


class StorageUsage(models.Model):
    """A vault's largest Storage Vault Data Size of a day (UTC): what its storage is billed on (rule B1).

    Kept when the vault is deleted (the label says which it was), so past days stay billed.
    """

    vault = models.ForeignKey(Vault, null=True, on_delete=models.SET_NULL, related_name="storage_usage")
    vault_label = models.CharField(max_length=140)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="storage_usage")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="storage_usage")
    day = models.DateField()
    peak_bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vault", "day"], name="one_usage_row_per_vault_day")]

    def __str__(self):
        return f"{self.vault_label} {self.day}: {self.peak_bytes}"


class RemovedVaultArea(models.Model):
    """A deleted vault's area of its region's store, kept until the data in it is gone (rule V7).

    The vault's rows go at once; the objects are removed after the commit and again by the
    hourly garbage collection until a removal succeeds an hour after the deletion, so a store
    that fails, or a job that was still writing, leaves nothing behind.
    """

    vault_id = models.CharField(max_length=32)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="+")
    prefix = models.CharField(max_length=255)
    deleted = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    def __str__(self):
        return f"{self.prefix} of deleted vault {self.vault_id}"
