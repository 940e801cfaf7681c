"""`manage.py restore target create|list ...` and `manage.py restore start POINT_ID --target ID [--wait]`."""

import time

from django.core.management.base import CommandError

from console.commandsupport import ServiceCommand, lookup
from console.models import Account, Region
from restore import selectors, services
from restore.models import Existing, Network, OnDamage, RestoreJob, RestoreTarget, TargetKind
from vaults.models import BackupPoint


def target_json(target):
    return {
        "id": target.pk,
        "name": target.name,
        "kind": target.kind,
        "region": target.region.code,
        "location": target.location,
        "prefix": target.prefix,
        "network": target.network,
    }


class Command(ServiceCommand):
    help = "Register restore targets and start restore jobs."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        target = self.subcommand("target", "register or list restore targets")
        target.add_argument("verb", choices=["create", "list"])
        target.add_argument("--account", required=True)
        target.add_argument("--region", required=True)
        target.add_argument("--kind", choices=TargetKind.values)
        target.add_argument("--location", help="directory, or bucket for an OSS bucket")
        target.add_argument("--prefix", default="")
        target.add_argument("--name", default=None)
        target.add_argument("--network", default=Network.INTERNET, choices=Network.values)
        start = self.subcommand("start", "restore a backup point to a target")
        start.add_argument("point_id")
        start.add_argument("--target", required=True, type=int)
        start.add_argument("--path", default="", help="only this part of a file tree")
        start.add_argument("--existing", default=Existing.FAIL, choices=Existing.values)
        start.add_argument(
            "--on-damage",
            default=OnDamage.FAIL,
            choices=OnDamage.values,
            help="fail (default), or intact: restore what is intact and list the damaged files in the report",
        )
        start.add_argument("--wait", action="store_true", help="run the job here and wait for it")

    def handle_target(self, *, verb, account, region, kind, location, prefix, name, network, **_):
        account = lookup(Account.objects, "account", slug=account)
        region = lookup(Region.objects, "region", code=region)
        if verb == "list":
            targets = selectors.targets_of(account, region)
            return {"targets": [target_json(t) for t in targets]}, "\n".join(
                f"{t.pk}  {t.kind:16} {t.name}  {t.location}" for t in targets
            ) or "No restore targets."
        if not kind or not location:
            raise CommandError("target create needs --kind and --location.")
        target = services.create_restore_target(
            actor=None,
            account=account,
            region=region,
            kind=kind,
            name=name or f"{kind} {location}"[-64:],
            location=location,
            prefix=prefix,
            network=network,
        )
        return target_json(target), f"{target.pk} {target.name}"

    def handle_start(self, *, point_id, target, path, existing, on_damage, wait, **_):
        point = lookup(
            BackupPoint.objects.select_related("vault__region", "vault__account"), "backup point", pk=point_id
        )
        target = lookup(RestoreTarget.objects.select_related("region"), "restore target", pk=target)
        job = services.start_restore(
            actor=None, point=point, target=target, sub_path=path, existing=existing, on_damage=on_damage
        )
        if wait:
            services.run_restore_job(job.pk)  # the queued task finds it finished and does nothing
            job.refresh_from_db()
            while job.is_active:
                time.sleep(0.5)
                job.refresh_from_db()
            if job.status == RestoreJob.Status.FAILED:
                raise CommandError(job.error)
        result = {
            "id": job.pk,
            "status": job.status,
            "bytes": job.bytes_written,
            "files": job.files_done,
            "report": job.report,
            "seconds": (job.finished - job.started).total_seconds() if job.finished and job.started else None,
        }
        return result, f"Restore job {job.pk}: {job.get_status_display()}"
