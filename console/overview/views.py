"""Usage & Billing: a month of the region's usage and charges, per vault and per day (rule B3)."""

from django.core.paginator import Paginator
from django.shortcuts import render

from console.pages import region_page

from . import billing

USAGE_VAULTS_PER_PAGE = 50  # the per-vault table, costliest first; `manage.py usage` gives every line


@region_page
def usage(request, account, region):
    """Rule B3: usage and the resulting charges per vault and per day, for one month."""
    context = {"region": region, "account": account}
    try:
        month = billing.parse_month(request.GET.get("month", ""))
    except billing.BadMonth as exc:
        context["error"] = str(exc)
        month, status = billing.parse_month(""), 400
    else:
        status = 200
    context["usage"] = usage = billing.month_usage(account, region, month)
    context["page"] = Paginator(usage.vaults, USAGE_VAULTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "console/usage.html", context, status=status)
