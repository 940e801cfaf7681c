"""Read queries the console shares: the user's accounts, regions, the audit log."""

from django.db.models import Q
from django.http import Http404

from .models import Account, AuditLog, Region


def accounts_of(user):
    if not user.is_authenticated:
        return Account.objects.none()
    return Account.objects.filter(memberships__user=user).order_by("slug")


def enabled_regions():
    return Region.objects.filter(is_enabled=True)


def region_or_404(code):
    """An unknown region code in a URL is a 404; a disabled region's pages stay open (its vaults stay visible)."""
    try:
        return Region.objects.get(code=code)
    except Region.DoesNotExist:
        raise Http404(f"No region {code!r}.") from None


def selectable_regions(account, current=None):
    """The region selector: enabled regions, and disabled ones where the account has vaults (or the page is)."""
    shown = Q(is_enabled=True)
    if account is not None:
        shown |= Q(pk__in=Region.objects.filter(vaults__account=account).values("pk"))
    if current:
        shown |= Q(code=current)
    return Region.objects.filter(shown)


def audit_log_of(account, region=None):
    rows = AuditLog.objects.filter(account=account).select_related("actor")
    if region is not None:
        rows = rows.filter(region_code=region.code)
    return rows


SESSION_ACCOUNT_KEY = "account"


def current_account(request):
    """The account the user works in: the one chosen in the session, else their first."""
    accounts = accounts_of(request.user)
    chosen = request.session.get(SESSION_ACCOUNT_KEY)
    if chosen:
        account = accounts.filter(slug=chosen).first()
        if account is not None:
            return account
    return accounts.first()
