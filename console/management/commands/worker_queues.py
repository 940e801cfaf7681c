"""`manage.py worker_queues [--region CODE ...]`: the Celery queues a worker should consume, comma-separated.

The console's own queue plus one replication queue per (enabled) region; a
deployment puts a region's worker next to that region's store with --region.
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from console.models import Region


class Command(BaseCommand):
    help = "Print the queues for `celery worker -Q`."

    def add_arguments(self, parser):
        parser.add_argument("--region", action="append", default=[], help="only these destination regions")
        parser.add_argument("--no-console", action="store_true", help="without the console's own queue")

    def handle(self, *args, region, no_console, **options):
        codes = region or list(Region.objects.filter(is_enabled=True).values_list("code", flat=True))
        queues = [] if no_console else [settings.CELERY_TASK_DEFAULT_QUEUE]
        queues += [settings.REPLICATION_QUEUE_TEMPLATE.format(region=code) for code in codes]
        self.stdout.write(",".join(dict.fromkeys(queues)))
