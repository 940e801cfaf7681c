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


@register.tag("dialog_form")
def dialog_form(parser, token):
    """`{% dialog_form id="x" action=url once=True %}...{% end_dialog_form %}`: a console dialog's frame.

    The open <dialog> labelled by "<id>-title", and a form that posts to `action` through htmx, answered in
    place, its buttons disabled while it is sent, with its CSRF token and, for a create (`once`), its one-time
    submission token. The content (title, fields, actions) is the tag's body.
    """
    kwargs = template.base.token_kwargs(token.split_contents()[1:], parser)
    nodelist = parser.parse(("end_dialog_form",))
    parser.delete_first_token()
    return DialogFormNode(nodelist, kwargs)


class DialogFormNode(template.Node):
    def __init__(self, nodelist, kwargs):
        self.nodelist, self.kwargs = nodelist, kwargs

    def render(self, context):
        dialog = {name: value.resolve(context) for name, value in self.kwargs.items()}
        with context.push(dialog=dialog, dialog_body=self.nodelist.render(context)):
            return context.template.engine.get_template("console/_dialog_form.html").render(context)
