"""Operators' admin for replication: read-only, except "Stop backup vault replication" through the service.

Pairs change state only through `replication.services` (rule R12) and the copy
engine, so the admin adds, edits and deletes nothing; its one action stops
pairs after a confirmation page, like the console.
"""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.template import engines

from console.adminsupport import ServiceModelAdmin

from . import services
from .models import CrossRegionTraffic, ReplicatedPoint, ReplicationPair

STOP_CONFIRMATION = engines["django"].from_string(
    """{% extends "admin/base_site.html" %}
{% load i18n l10n admin_urls %}
{% block bodyclass %}{{ block.super }} app-{{ opts.app_label }} model-{{ opts.model_name }}{% endblock %}
{% block breadcrumbs %}
<div class="breadcrumbs">
<a href="{% url 'admin:index' %}">{% translate 'Home' %}</a>
&rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">{{ opts.app_config.verbose_name }}</a>
&rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">{{ opts.verbose_name_plural|capfirst }}</a>
&rsaquo; Stop backup vault replication
</div>
{% endblock %}
{% block content %}
<p>Stop these replications? <strong>This cannot be undone:</strong> a stopped replication never resumes,
nothing new reaches its target, and the target becomes a standalone vault whose points stay restorable.</p>
<ul>{% for pair in queryset %}<li>{{ pair.id }}: {{ pair.source_label }} &rarr; {{ pair.target_label }}
({{ pair.get_state_display }})</li>{% endfor %}</ul>
<form method="post">{% csrf_token %}
<div>
{% for pair in queryset %}<input type="hidden" name="{{ action_checkbox_name }}" value="{{ pair.pk|unlocalize }}">
{% endfor %}<input type="hidden" name="action" value="stop_replication">
<input type="hidden" name="confirm" value="yes">
<input type="submit" value="Yes, stop replication">
<a href="{% url opts|admin_urlname:'changelist' %}" class="button cancel-link">No, take me back</a>
</div>
</form>
{% endblock %}"""
)


class ReadOnlyAdmin(ServiceModelAdmin):
    """Visible to the accounts' operators; nothing is added, changed or deleted by hand."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ReplicationPair)
class ReplicationPairAdmin(ReadOnlyAdmin):
    account_path = "account"
    actions = ["stop_replication"]
    list_display = (
        "id",
        "account",
        "source_label",
        "target_label",
        "state",
        "history_percent",
        "bytes_sent",
        "last_replicated",
        "has_error",
        "created",
    )
    list_filter = ("state",)
    search_fields = ("id", "source_vault__id", "target_vault__id", "source_label", "target_label")
    list_select_related = ("account",)
    fields = (
        "id",
        "account",
        "source_vault",
        "source_label",
        "target_vault",
        "target_label",
        "state",
        "error",
        "error_since",
        "attempts",
        "history_percent",
        "history_points_total",
        "history_points_done",
        "history_bytes_total",
        "history_bytes_done",
        "history_started",
        "history_finished",
        "bytes_sent",
        "lag_seconds",
        "last_replicated",
        "created",
        "stopped",
    )
    readonly_fields = fields

    @admin.display(boolean=True, description="error")
    def has_error(self, pair):
        return bool(pair.error)

    def has_stop_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Stop backup vault replication", permissions=["stop"])
    def stop_replication(self, request, queryset):
        """Rule R12: confirmed on a page of its own, then stopped through the service, audited."""
        pairs = list(queryset.select_related("account", "source_vault__region"))
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "queryset": pairs,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "title": "Stop backup vault replication",
            }
            request.current_app = self.admin_site.name
            return HttpResponse(STOP_CONFIRMATION.render(context, request))
        for pair in pairs:
            try:  # the admin's own confirmation page stands for the typed name
                services.stop_replication(actor=request.user, pair=pair)
            except ValidationError as exc:
                self.message_user(request, f"{pair.id}: {' '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(
                    request, f"Stopped {pair.id}; {pair.target_label} is now a standalone vault.", messages.SUCCESS
                )


@admin.register(ReplicatedPoint)
class ReplicatedPointAdmin(ReadOnlyAdmin):
    account_path = "pair__account"
    list_display = ("source_point_id", "target_point", "pair", "state", "is_history", "size", "bytes_sent", "committed")
    list_filter = ("state", "is_history")
    search_fields = ("source_point_id", "target_point__id", "pair__id")
    list_select_related = ("pair", "target_point")


@admin.register(CrossRegionTraffic)
class CrossRegionTrafficAdmin(ReadOnlyAdmin):
    account_path = "pair__account"
    list_display = ("pair", "day", "bytes_sent")
    list_filter = ("day",)
    search_fields = ("pair__id",)
    list_select_related = ("pair",)
    date_hierarchy = "day"
