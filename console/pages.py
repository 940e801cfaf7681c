"""What every region-scoped page of every app shares: its scope, htmx-aware rendering, the answer after an
action, polling that stops, and create forms submitted once.

Views stay thin: `@region_page` gives them (request, account, region), they call a service and
answer with `render_page`, `done` or `poll`.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from .forms import add_service_errors
from .selectors import current_account, region_or_404
from .services import SUBMISSION_FIELD, once, submitted_before


def console_scope(request, region_code):
    """(account, region) for a region-scoped page; an unknown region is a 404 (a disabled one is not)."""
    return current_account(request), region_or_404(region_code)


def no_account(request, region):
    return render(request, "console/no_account.html", {"region": region}, status=403)


def region_page(view):
    """Login, the region of the URL (404 if unknown) and the user's account, remembered for the next visit."""

    @login_required
    @wraps(view)
    def wrapper(request, region, **kwargs):
        account, region_obj = console_scope(request, region)
        if account is None:
            return no_account(request, region_obj)
        if request.session.get("region") != region_obj.code:  # written once, not on every page
            request.session["region"] = region_obj.code
        return view(request, account, region_obj, **kwargs)

    return wrapper


def render_page(request, template, context, status=200):
    """The full page, or for htmx the fragment named `partial` of the same template."""
    if request.htmx and context.get("partial"):
        template = f"{template}#{context['partial']}"
    return render(request, template, context, status=status)


def done(request, url):
    """After an action: go to `url` (htmx follows it with a full page load)."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def poll(response, *, settled):
    """A polled fragment: once what it shows has settled, 286 tells htmx to stop polling."""
    if settled:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def jobs_page(request, template, table, jobs, context, per_page=25):
    """A page of jobs whose table (the partial `table`, its element id too) polls while one is queued or running."""
    page = Paginator(jobs, per_page).get_page(request.GET.get("page"))
    active = any(job.is_active for job in page.object_list)
    context = {**context, "page": page, "jobs": page.object_list, "active": active}
    if request.htmx and request.htmx.target == table:
        return poll(render(request, f"{template}#{table}", context), settled=not active)
    return render(request, template, context)


def action_dialog(request, form, *, template, context, act, then):
    """A dialog that does one thing on a valid POST, `act(cleaned_data)`, then goes to `then(result)`.

    Invalid input or the service's refusal re-renders it with the errors and 422. `context(form)` gives
    the template what it shows besides the form.
    """
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                result = act(form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, then(result))
        status = 422
    return render_page(request, template, {**context(form), "form": form}, status=status)


def create_dialog(request, form, *, template, context, action, model, create, then):
    """A create dialog (action_dialog): `create(cleaned_data)` runs once per submission.

    A repeat of a submission goes where the first went; a GET with data (a choice changed)
    re-renders the dialog without errors.
    """
    if request.method == "POST":
        if (made := repeated(request, action, model)) is not None:
            return done(request, then(made))
    elif form.is_bound:
        form.errors.clear()  # a re-render for a changed choice is not a submission
    return action_dialog(
        request,
        form,
        template=template,
        context=context,
        act=lambda data: create_once(request, action, model, lambda: create(data)),
        then=then,
    )


def repeated(request, action, model):
    """What an earlier submission of this form made (a double click, a resent form), or None."""
    token = request.POST.get(SUBMISSION_FIELD, "")
    return submitted_before(user=request.user, token=token, action=action, model=model)


def create_once(request, action, model, create):
    """`create()` once per submitted form: a double click or a resent form gets what the first made."""
    token = request.POST.get(SUBMISSION_FIELD, "")
    return once(user=request.user, token=token, action=action, model=model, create=create)
