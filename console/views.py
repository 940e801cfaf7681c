"""Console shell: home, account switch, audit log."""

from urllib.parse import urlsplit

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .context_processors import region_switch_url
from .pages import region_page
from .selectors import SESSION_ACCOUNT_KEY, accounts_of, audit_log_of, enabled_regions


@login_required
def home(request):
    region = enabled_regions().first()
    if region is None:
        return render(request, "console/no_region.html", status=503)
    return redirect("vaults:list", region=request.session.get("region") or region.code)


@login_required
@require_POST
def switch_account(request):
    account = accounts_of(request.user).filter(slug=request.POST.get("account", "")).first()
    if account is None:
        return HttpResponseBadRequest("Not a member of that account.")
    request.session[SESSION_ACCOUNT_KEY] = account.slug
    return HttpResponseRedirect(page_after_switch(request, safe_next(request, request.POST.get("next", ""))))


def page_after_switch(request, url):
    """The page the switch came from, or its section's list where it showed one of the other account's objects
    (a vault, a job), which would be "not found" in this one."""
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return url
    if not set(match.kwargs) - {"region"}:
        return url
    region = match.kwargs.get("region") or request.session.get("region")
    return region_switch_url(match, region) if region else reverse("home")


def safe_next(request, url):
    """`url` if it stays on this site (no other host, no `javascript:`), else the region's Storage Vaults page."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    region = request.session.get("region")
    return reverse("vaults:list", kwargs={"region": region}) if region else reverse("home")


@region_page
def audit_log(request, account, region):
    page = Paginator(audit_log_of(account, region), 50).get_page(request.GET.get("page"))
    return render(request, "console/audit_log.html", {"region": region, "account": account, "page": page})
