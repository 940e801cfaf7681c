"""Admin plumbing shared by every app: admin forms that save through services, tenant scoping.

The admin never writes a model directly: its forms hand the cleaned data to
the same service function the console uses, so an operator cannot break a
rule either, and a refusal shows on the form like any field error.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import Http404

from .forms import add_service_errors
from .models import Account, Region


class ServiceAdminForm(forms.ModelForm):
    """`run_service(cleaned_data)` does the change; its refusals become form errors."""

    actor = None

    def run_service(self, cleaned_data):
        raise ValidationError("This change is not allowed in the admin.")

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                self.instance = self.run_service(cleaned)
            except ValidationError as exc:
                add_service_errors(self, exc)
        return cleaned

    def _post_clean(self):
        """The service validated and saved the object; the model form must not write it again."""

    def save(self, commit=True):
        return self.instance

    def save_m2m(self):
        """Nothing to do: the service saved everything."""


class ServiceModelAdmin(admin.ModelAdmin):
    """Saves through the form's service; scoped to the user's accounts unless superuser."""

    account_path = "account"  # how the model reaches its account, for tenant scoping

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def save_model(self, request, obj, form, change):
        """Saved by the form's service already."""

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if request.user.is_superuser or self.account_path is None:
            return rows
        return rows.filter(**{f"{self.account_path}__memberships__user": request.user}).distinct()

    def _object_or_404(self, request, object_id):
        """Rule A1: another account's object is a 404 in the admin too."""
        if object_id is not None and not self.get_queryset(request).filter(pk=object_id).exists():
            raise Http404("No such object.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._object_or_404(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._object_or_404(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._object_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Account choices are the user's accounts; region choices the enabled regions."""
        if db_field.name == "account" and db_field.related_model is Account:
            kwargs["queryset"] = Account.objects.filter(pk__in=self.user_account_ids(request))
        elif db_field.name == "region" and db_field.related_model is Region:
            kwargs["queryset"] = Region.objects.filter(is_enabled=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def user_account_ids(self, request):
        rows = Account.objects.all()
        if not request.user.is_superuser:
            rows = rows.filter(memberships__user=request.user)
        return rows.values_list("pk", flat=True)
