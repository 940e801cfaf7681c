"""Shared shell for management commands: subcommands, --json output, one-line refusals."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


def one_line(error):
    """A service refusal as the single line a script reads on stderr."""
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


class ServiceCommand(BaseCommand):
    """Subclasses add subparsers and `handle_<action>` methods that return a dict and a text line."""

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        self.subparsers = parser.add_subparsers(dest="action", required=True)

    def subcommand(self, name, help_text):
        sub = self.subparsers.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        return sub

    def handle(self, *args, **options):
        handler = getattr(self, "handle_" + options["action"].replace("-", "_"))
        try:
            result, text = handler(**options)
        except ValidationError as exc:
            raise CommandError(one_line(exc)) from exc
        if options.get("json"):
            self.stdout.write(json.dumps(result, default=str))
        else:
            self.stdout.write(text)


def lookup(queryset, what, **filters):
    try:
        return queryset.get(**filters)
    except queryset.model.DoesNotExist:
        raise CommandError(f"No {what} {' '.join(str(v) for v in filters.values())}.") from None
