"""Small display filters and tags shared by the console's templates."""

import secrets
from decimal import Decimal

from django import template
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from console.services import SUBMISSION_FIELD

register = template.Library()


@register.filter
def duration(seconds):
    """1h 02m, 3m 05s, 12s; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@register.filter
def rate(bytes_per_second):
    return f"{filesizeformat(bytes_per_second)}/s" if bytes_per_second else "—"


@register.filter
def money(value):
    """A charge: four decimals, so that small usage does not show as nothing."""
    return f"{Decimal(value).quantize(Decimal('0.0001')):,}"


@register.simple_tag
def submission_token():
    """The hidden one-time token of a create form (console.services.once): new on every render."""
    return format_html('<input type="hidden" name="{}" value="{}">', SUBMISSION_FIELD, secrets.token_urlsafe(24))
