"""Restore Targets and Restore Jobs pages, the Create restore job dialog and its progress."""

from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse

from console.forms import add_service_errors
from console.pages import create_once, done, jobs_page, region_page, render_page, repeated

from . import selectors, services
from .forms import RestoreJobForm, RestoreTargetForm
from .models import RestoreJob, RestoreTarget


@region_page
def target_list(request, account, region):
    targets = selectors.targets_of(account, region)
    return render(request, "restore/target_list.html", {"account": account, "region": region, "targets": targets})


@region_page
def target_create(request, account, region):
    form = RestoreTargetForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if repeated(request, "create_restore_target", RestoreTarget) is not None:
            return done(request, reverse("restore:targets", kwargs={"region": region.code}))
        if form.is_valid():
            try:
                create_once(
                    request,
                    "create_restore_target",
                    RestoreTarget,
                    lambda: services.create_restore_target(
                        actor=request.user, account=account, region=region, **form.cleaned_data
                    ),
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, reverse("restore:targets", kwargs={"region": region.code}))
        status = 422
    context = {"account": account, "region": region, "form": form, "partial": "target-dialog"}
    return render_page(request, "restore/target_create.html", context, status=status)


@region_page
def job_list(request, account, region):
    """Restore Jobs of the region; the table polls while a job is queued or running."""
    jobs = selectors.jobs_of(account, region)
    return jobs_page(request, "restore/job_list.html", "restore-table", jobs, {"account": account, "region": region})


@region_page
def job_create(request, account, region):
    """Create restore job: vault, then its points, then the targets that fit the point (htmx re-renders)."""
    submitted = request.method == "POST"
    form = RestoreJobForm(request.POST if submitted else (request.GET or None), account=account, region=region)
    status = 200
    if submitted:
        if repeated(request, "start_restore", RestoreJob) is not None:
            return done(request, reverse("restore:list", kwargs={"region": region.code}))
        if form.is_valid():
            data = form.cleaned_data
            try:
                create_once(
                    request,
                    "start_restore",
                    RestoreJob,
                    lambda: services.start_restore(
                        actor=request.user,
                        point=data["point"],
                        target=data["target"],
                        sub_path=data["sub_path"],
                        existing=data["existing"],
                    ),
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return done(request, reverse("restore:list", kwargs={"region": region.code}))
        status = 422
    elif form.is_bound:
        form.errors.clear()  # a re-render for a changed vault or point is not a submission
    point = form.chosen("point")
    point_options, points_total = form.point_options() if form.chosen_vault else ([], 0)
    context = {
        "vault_options": form.vault_options(),
        "point_options": point_options,
        "points_total": points_total,
        "account": account,
        "region": region,
        "form": form,
        "partial": "restore-dialog",
        "point": point,
        "refusal_hint": _hint(point, form),
    }
    return render_page(request, "restore/job_create.html", context, status=status)


def _hint(point, form):
    if point is None:
        return None
    if reason := services.point_restore_refusal(point):  # the service's word, not a guess of the view's
        return reason
    if not form.fields["target"].queryset.exists():
        return "No restore target of the matching kind in this region: register one on the Restore Targets page."
    return None
