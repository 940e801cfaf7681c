"""Read queries for restore pages and commands, always scoped to an account (rule A1)."""

from .models import RestoreJob, RestoreTarget


def targets_of(account, region):
    return RestoreTarget.objects.filter(account=account, region=region).select_related("region")


def jobs_of(account, region):
    return RestoreJob.objects.filter(account=account, target__region=region).select_related("vault", "target")
