"""What the page layout needs on every page: the account, the region selector, the worker banner."""

from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

from .selectors import accounts_of, current_account, selectable_regions
from .workers import worker_silence


def region_switch_url(match, code):
    """Rule G3: the same kind of page in another region (a list page for a detail page)."""
    kwargs = dict(match.captured_kwargs)
    kwargs["region"] = code
    try:
        if set(kwargs) == {"region"}:
            return reverse(match.view_name, kwargs=kwargs)
        return reverse(f"{match.namespace}:list", kwargs={"region": code})
    except NoReverseMatch:
        return reverse("vaults:list", kwargs={"region": code})


def console(request):
    if not request.user.is_authenticated:
        return {}
    # Lazy: one query, and only when a template shows the banner (base.html; not the htmx fragments).
    context = {"worker_silence": SimpleLazyObject(worker_silence)}
    match = getattr(request, "resolver_match", None)
    if match is None or "region" not in match.kwargs:
        return context
    account = current_account(request)
    regions = list(selectable_regions(account, match.kwargs["region"]))
    return {
        **context,
        "current_account": account,
        "user_accounts": accounts_of(request.user),
        "region_links": [(r, region_switch_url(match, r.code)) for r in regions],
        "current_region_code": match.kwargs["region"],
    }
