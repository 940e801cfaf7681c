"""Restore Targets and Restore Jobs pages, the Create restore job dialog and its progress."""

from django.shortcuts import render
from django.urls import reverse

from console.pages import create_dialog, jobs_page, region_page

from . import selectors, services
from .forms import RestoreJobForm, RestoreTargetForm
from .models import OnDamage, RestoreJob, RestoreTarget


@region_page
def target_list(request, account, region):
    targets = selectors.targets_of(account, region)
    return render(request, "restore/target_list.html", {"account": account, "region": region, "targets": targets})


@region_page
def target_create(request, account, region):
    def create(data):
        return services.create_restore_target(actor=request.user, account=account, region=region, **data)

    return create_dialog(
        request,
        RestoreTargetForm(request.POST or None),
        template="restore/target_create.html",
        context=lambda form: {"account": account, "region": region, "partial": "target-dialog"},
        action="create_restore_target",
        model=RestoreTarget,
        create=create,
        then=lambda target: reverse("restore:targets", kwargs={"region": region.code}),
    )


@region_page
def job_list(request, account, region):
    """Restore Jobs of the region; the table polls while a job is queued or running."""
    jobs = selectors.jobs_of(account, region)
    return jobs_page(request, "restore/job_list.html", "restore-table", jobs, {"account": account, "region": region})


@region_page
def job_create(request, account, region):
    """Create restore job: vault, then its points, then the targets that fit the point (htmx re-renders)."""
    data = request.POST if request.method == "POST" else (request.GET or None)

    def create(data):
        return services.start_restore(
            actor=request.user,
            point=data["point"],
            target=data["target"],
            sub_path=data["sub_path"],
            existing=data["existing"],
            on_damage=data["on_damage"] or OnDamage.FAIL,
        )

    def context(form):
        point = form.chosen("point")
        point_options, points_total = form.point_options() if form.chosen_vault else ([], 0)
        return {
            "account": account,
            "region": region,
            "partial": "restore-dialog",
            "vault_options": form.vault_options(),
            "point_options": point_options,
            "points_total": points_total,
            "point": point,
            "refusal_hint": _hint(point, form),
        }

    return create_dialog(
        request,
        RestoreJobForm(data, account=account, region=region),
        template="restore/job_create.html",
        context=context,
        action="start_restore",
        model=RestoreJob,
        create=create,
        then=lambda job: reverse("restore:list", kwargs={"region": region.code}),
    )


def _hint(point, form):
    if point is None:
        return None
    if reason := services.point_restore_refusal(point):  # the service's word, not a guess of the view's
        return reason
    if not form.fields["target"].queryset.exists():
        return "No restore target of the matching kind in this region: register one on the Restore Targets page."
    return None
