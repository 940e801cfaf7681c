"""`manage.py replication start|status|stop|sync`: cross-region replication for operators and scripts.

A thin shell over `replication.services` (rules R1-R12, audit log) and, for
`sync --wait`, the copy engine run in this process.
"""

from django.core.management.base import CommandError
from django.db.models import Count, Q, Sum

from console.commandsupport import ServiceCommand, lookup
from console.models import Region
from replication import engine, services, tasks
from replication.models import ReplicatedPoint, ReplicationPair
from vaults.management.lookups import group_and_key
from vaults.models import BackupPoint, EncryptionMethod, Tier, Vault


def _iso(value):
    return value.isoformat() if value else None


def _one_line(text):
    return " ".join(str(text).split())


def pair_json(pair):
    """What `replication status --json` prints; the historical sync's figures, then the continuous copy's."""
    points_total, points_done = pair.history_points_total, pair.history_points_done
    bytes_total, bytes_done = pair.history_bytes_total, pair.history_bytes_copied
    if pair.state == ReplicationPair.State.INITIALIZING and pair.source_vault_id:
        # not planned yet: the history will be every standard point of the source now (rule R8)
        standard = BackupPoint.objects.filter(vault=pair.source_vault_id, tier=Tier.STANDARD)
        points_total = standard.count()
        bytes_total = standard.aggregate(n=Sum("size"))["n"] or 0
    copies = dict(pair.copies.values_list("state").annotate(n=Count("pk")))
    eta = pair.history_eta_seconds
    return {
        "id": pair.id,
        "state": pair.state,
        "source_vault": pair.source_vault_id,
        "source_region": pair.source_vault.region.code if pair.source_vault else None,
        "source_label": pair.source_label,
        "target_vault": pair.target_vault_id,
        "target_region": pair.target_vault.region.code if pair.target_vault else None,
        "target_label": pair.target_label,
        "historical_progress": pair.history_percent,
        "points_left_source": pair.history_points_left,
        "points_total": points_total,
        "points_done": points_done,
        "bytes_total": bytes_total,
        "bytes_done": bytes_done,
        "rate_bytes_per_second": round(pair.history_rate),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "points_replicated": copies.get(ReplicatedPoint.State.COMMITTED, 0),
        "points_pending": copies.get(ReplicatedPoint.State.PENDING, 0),
        "bytes_sent": pair.bytes_sent,
        "lag_seconds": round(pair.lag_seconds, 3) if pair.is_active else None,
        "last_replicated": _iso(pair.last_replicated),
        "waiting_because": pair.stall_reason if pair.is_active else None,
        "error": pair.error,
        "error_since": _iso(pair.error_since),
        "attempts": pair.attempts,
        "created": _iso(pair.created),
        "history_started": _iso(pair.history_started),
        "history_finished": _iso(pair.history_finished),
        "stopped": _iso(pair.stopped),
    }


def pair_text(data):
    return "\n".join(f"{key}: {'' if value is None else value}" for key, value in data.items())


def _pairs():
    return ReplicationPair.objects.select_related("account", "source_vault__region", "target_vault__region")


class Command(ServiceCommand):
    help = "Start, show, stop and sync cross-region replication of backup vaults."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        start = self.subcommand("start", "replicate a vault to a Replication Target vault in another region")
        start.add_argument("--source", required=True, metavar="VAULT_ID", help="the General Backup vault to replicate")
        start.add_argument("--region", required=True, help="the destination region's code")
        target = start.add_mutually_exclusive_group(required=True)
        target.add_argument("--target", metavar="VAULT_ID", help="select a free Replication Target vault")
        target.add_argument("--create-name", metavar="NAME", help="create a Replication Target vault of this name")
        start.add_argument("--kms-key", default=None, help="with --create-name: KMS KeyId of the destination region")
        start.add_argument("--description", default="", help="with --create-name: the new vault's description")
        start.add_argument("--resource-group", default=None, help="with --create-name: the new vault's group")
        status = self.subcommand("status", "show a replication: state, progress, lag, bytes sent")
        status.add_argument("vault_id", metavar="VAULT_ID", help="the source or the target vault (or a pair id)")
        stop = self.subcommand("stop", "stop a vault's replication for good (Stop backup vault replication)")
        stop.add_argument("vault_id", metavar="VAULT_ID", help="the source vault")
        stop.add_argument("--yes", action="store_true", help="confirm: a stopped replication never resumes")
        sync = self.subcommand("sync", "copy what the target lacks now")
        sync.add_argument("vault_id", metavar="VAULT_ID", help="the source or the target vault (or a pair id)")
        sync.add_argument("--wait", action="store_true", help="run the sync in this process and wait for it")

    # -- start -------------------------------------------------------------------------------------

    def handle_start(self, *, source, region, target, create_name, kms_key, description, resource_group, **_):
        source_vault = lookup(Vault.objects.select_related("account", "region"), "vault", pk=source)
        destination = lookup(Region.objects, "region", code=region)
        if target is not None:
            if kms_key or description or resource_group:
                raise CommandError("--kms-key, --description and --resource-group apply only with --create-name.")
            pair = services.start_replication(
                actor=None,
                source_vault=source_vault,
                destination_region=destination,
                target_vault=lookup(Vault.objects, "vault", pk=target),
            )
        else:
            group, key = group_and_key(source_vault.account, resource_group, kms_key)
            create = {
                "name": create_name,
                "description": description,
                "resource_group": group,
                # a KMS key asks for KMS; the service refuses it if the source is not KMS-encrypted (rule R5)
                "encryption_method": EncryptionMethod.KMS if key else None,
                "kms_key": key,
            }
            pair = services.start_replication(
                actor=None, source_vault=source_vault, destination_region=destination, create=create
            )
        pair = _pairs().get(pk=pair.pk)
        data = pair_json(pair)
        return data, f"{pair.id}: {pair.source_label} -> {pair.target_label} ({pair.get_state_display()})"

    # -- status --------------------------------------------------------------------------------------

    def pair_of(self, vault_id):
        """The pair a vault is in: its running one, else its latest (stopped) one."""
        if vault_id.startswith("rp-"):
            return lookup(_pairs(), "replication", pk=vault_id)
        vault = lookup(Vault.objects, "vault", pk=vault_id)
        pairs = _pairs().filter(Q(source_vault=vault) | Q(target_vault=vault))
        pair = pairs.active().first() or pairs.order_by("-created").first()
        if pair is None:
            raise CommandError(f"{vault.id} ({vault.name}) has never been replicated: it is in no replication.")
        return pair

    def handle_status(self, *, vault_id, **_):
        data = pair_json(self.pair_of(vault_id))
        return data, pair_text(data)

    # -- stop ----------------------------------------------------------------------------------------

    def handle_stop(self, *, vault_id, yes, **_):
        vault = lookup(Vault.objects.select_related("region"), "vault", pk=vault_id)
        pair = services.pair_to_stop(vault)
        if not yes:
            raise CommandError("Stopping replication cannot be undone (the pair never resumes): add --yes to confirm.")
        # --yes is the confirmation; the service refuses a pair that is stopped already (rule R12)
        services.stop_replication(actor=None, pair=pair, confirmation=vault.name)
        data = pair_json(_pairs().get(pk=pair.pk))
        return data, f"Stopped {pair.id}; {pair.target_vault_id} is now a standalone vault."

    # -- sync ----------------------------------------------------------------------------------------

    def handle_sync(self, *, vault_id, wait, **_):
        pair = self.pair_of(vault_id)
        if not pair.is_active:
            raise CommandError(f"{pair.id} is stopped: a stopped replication never resumes.")
        if not wait:
            services.enqueue_sync(pair.id)
            pair = _pairs().get(pk=pair.pk)
            if pair.error:
                raise CommandError(_one_line(pair.error))
            queue = services.queue_for(pair.target_vault.region.code)
            return {**pair_json(pair), "queued": queue}, f"Queued the sync of {pair.id} on {queue}."
        try:
            engine.sync_pair(pair.id)
        except engine.PairStopped as exc:
            raise CommandError(_one_line(exc)) from exc
        except tasks.RETRYABLE as exc:
            services.note_pair_error(pair.id, f"{exc.__class__.__name__}: {exc}")  # shown like a worker's failure
            raise CommandError(_one_line(f"{pair.id}: {exc.__class__.__name__}: {exc}")) from exc
        data = pair_json(_pairs().get(pk=pair.pk))
        return data, pair_text(data)
