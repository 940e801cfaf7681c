"""Replication pairs (a source vault and its replication target vault) and what they copied.

A pair has one state machine: initializing -> syncing (history) -> running ->
stopped, which is terminal (rule R12). An error is a condition beside the state
(`error` not empty), retried and shown, never silent.
"""

import secrets

from django.db import models
from django.utils import timezone

from console.models import Account, Region
from vaults.models import BackupPoint, Vault


def new_pair_id():
    return "rp-" + secrets.token_hex(8)


class PairQuerySet(models.QuerySet):
    def active(self):
        """Pairs that run (initializing, syncing history or running): not stopped."""
        return self.exclude(state=ReplicationPair.State.STOPPED)


class ReplicationPair(models.Model):
    class State(models.TextChoices):
        INITIALIZING = "initializing", "Initializing"
        SYNCING = "syncing", "Syncing history"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    ACTIVE_STATES = (State.INITIALIZING, State.SYNCING, State.RUNNING)

    id = models.CharField(primary_key=True, max_length=32, default=new_pair_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="replication_pairs")
    # A vault of a stopped pair can be deleted (rule R13); the pair's record stays, with its names.
    source_vault = models.ForeignKey(Vault, null=True, on_delete=models.SET_NULL, related_name="replications_out")
    target_vault = models.ForeignKey(Vault, null=True, on_delete=models.SET_NULL, related_name="replications_in")
    source_label = models.CharField(max_length=128, blank=True)
    target_label = models.CharField(max_length=128, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.INITIALIZING)
    error = models.TextField(blank=True, help_text="Why copying is failing now; retried with backoff.")
    error_since = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # rule C4: the policy whose replication rule started the pair (it outlives the rule and the policy)
    by_policy = models.CharField(max_length=32, blank=True)
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="When the one retry scheduled after a failure runs (backoff)."
    )
    created = models.DateTimeField(auto_now_add=True)
    stopped = models.DateTimeField(null=True, blank=True)
    history_points_total = models.PositiveIntegerField(default=0)
    history_points_done = models.PositiveIntegerField(default=0)
    history_bytes_total = models.BigIntegerField(default=0)
    history_bytes_done = models.BigIntegerField(default=0)
    history_bytes_in_flight = models.BigIntegerField(
        default=0, help_text="Of the historical point being copied, the bytes copied so far (zero once it lands)."
    )
    history_points_left = models.PositiveIntegerField(
        default=0, help_text="Historical points deleted or archived at the source before they were copied."
    )
    history_started = models.DateTimeField(null=True, blank=True)
    history_finished = models.DateTimeField(null=True, blank=True)
    bytes_sent = models.BigIntegerField(default=0, help_text="Bytes sent between the regions (billed, rule B1).")
    last_replicated = models.DateTimeField(null=True, blank=True, help_text="Creation time of the newest copied point.")
    # The sync lease (replication/lease.py): who is copying now, their last sign of life, and whether
    # another round was asked for while they were.
    sync_owner = models.CharField(max_length=300, blank=True, editable=False)
    sync_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)
    sync_wanted = models.BooleanField(default=False, editable=False)

    objects = PairQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_vault"], condition=~models.Q(state="stopped"), name="one_active_target_per_source"
            ),
            models.UniqueConstraint(
                fields=["target_vault"], condition=~models.Q(state="stopped"), name="one_active_source_per_target"
            ),
        ]

    def __str__(self):
        return f"{self.source_vault_id} -> {self.target_vault_id} ({self.state})"

    @property
    def is_active(self):
        return self.state in self.ACTIVE_STATES

    @property
    def stall_reason(self):
        """Why copying waits whatever the workers do, or None: a region of the pair is disabled."""
        for vault in (self.source_vault, self.target_vault):
            if vault is not None and (reason := vault.region.new_work_refusal):
                return f"Copying waits: {reason}"
        return None

    @property
    def is_moving(self):
        """Something is (or should be) copying: the console keeps polling."""
        return self.state in (self.State.INITIALIZING, self.State.SYNCING) or bool(self.error)

    @property
    def history_bytes_copied(self):
        """Bytes of the history copied: the points that landed and the part of the one being copied."""
        return self.history_bytes_done + self.history_bytes_in_flight

    @property
    def history_percent(self):
        if self.state == self.State.RUNNING or (self.history_finished and self.history_bytes_total == 0):
            return 100
        if self.history_bytes_total:
            return min(100, int(100 * self.history_bytes_copied / self.history_bytes_total))
        return 0

    @property
    def history_rate(self):
        if not self.history_started:
            return 0
        end = self.history_finished or timezone.now()
        return self.history_bytes_copied / max((end - self.history_started).total_seconds(), 1e-3)

    @property
    def history_eta_seconds(self):
        if self.state != self.State.SYNCING or not self.history_rate:
            return None
        return max(0, self.history_bytes_total - self.history_bytes_copied) / self.history_rate

    @property
    def lag_seconds(self):
        """How far behind the target is: age of the oldest source point not copied yet, else 0.

        A list page sets `oldest_pending` for all its pairs in one query (replication_of).
        """
        if not hasattr(self, "oldest_pending"):
            pending = BackupPoint.objects.filter(vault=self.source_vault_id, tier="standard").exclude(
                id__in=self.copies.filter(state=ReplicatedPoint.State.COMMITTED).values("source_point_id")
            )
            self.oldest_pending = pending.aggregate(oldest=models.Min("created"))["oldest"]
        if self.oldest_pending is None:
            return 0
        return max(0.0, (timezone.now() - self.oldest_pending).total_seconds())


class ReplicatedPoint(models.Model):
    """One source point's copy at the target: planned, committed, or removed with its source."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        COMMITTED = "committed", "Committed"
        REMOVED = "removed", "Removed"

    pair = models.ForeignKey(ReplicationPair, on_delete=models.CASCADE, related_name="copies")
    source_point_id = models.CharField(max_length=32)
    source_created = models.DateTimeField()
    source_committed = models.DateTimeField(default=timezone.now)
    target_point = models.ForeignKey(BackupPoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    is_history = models.BooleanField(default=False)
    size = models.BigIntegerField(default=0)
    bytes_sent = models.BigIntegerField(default=0)
    committed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["source_created"]
        constraints = [models.UniqueConstraint(fields=["pair", "source_point_id"], name="one_copy_per_source_point")]

    def __str__(self):
        return f"{self.source_point_id} -> {self.target_point_id or '…'}"


class CrossRegionTraffic(models.Model):
    """Bytes sent between regions per pair and day (rule B1)."""

    pair = models.ForeignKey(ReplicationPair, on_delete=models.CASCADE, related_name="traffic")
    region = models.ForeignKey(
        Region, null=True, on_delete=models.PROTECT, related_name="+", help_text="The source's: billed there."
    )
    day = models.DateField()
    bytes_sent = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pair", "day"], name="one_traffic_row_per_pair_day")]

    def __str__(self):
        return f"{self.pair_id} {self.day}: {self.bytes_sent}"


class PolicyReplication(models.Model):
    """A backup policy's replication rule (rules C1, C4, C5): the pair it started or joined. Turning the rule
    off keeps the pair running: stopping it is Stop backup vault replication's explicit act (R12)."""

    policy = models.OneToOneField("vaults.Policy", on_delete=models.CASCADE, related_name="replication_rule")
    pair = models.ForeignKey(ReplicationPair, null=True, on_delete=models.SET_NULL, related_name="policy_rules")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.policy} -> {self.pair_id}"
