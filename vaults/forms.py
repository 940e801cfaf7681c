"""Vault forms: they parse input; the rules are checked by `vaults.services`."""

from datetime import UTC, date, datetime, time, timedelta

from django import forms

from console.models import ResourceGroup

from .models import BackupSource, EncryptionMethod, KmsKey, SourceType, VaultType


class VaultCreateForm(forms.Form):
    name = forms.CharField(label="Vault Name", max_length=64)
    description = forms.CharField(
        label="Vault Description", max_length=255, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    resource_group = forms.ModelChoiceField(
        label="Vault Resource Group", queryset=ResourceGroup.objects.none(), empty_label=None
    )
    vault_type = forms.ChoiceField(label="Vault Type", choices=VaultType.choices, initial=VaultType.GENERAL)
    encryption_method = forms.ChoiceField(
        label="Vault Encryption Method", choices=EncryptionMethod.choices, initial=EncryptionMethod.CLOUD_BACKUP_MANAGED
    )
    kms_key = forms.ModelChoiceField(
        label="KMS KeyId", queryset=KmsKey.objects.none(), required=False, to_field_name="key_id"
    )

    def __init__(self, *args, account, region, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["resource_group"].queryset = ResourceGroup.objects.filter(account=account)
        self.fields["kms_key"].queryset = KmsKey.objects.filter(account=account, region=region)

    @property
    def wants_kms(self):
        value = self.data.get("encryption_method") if self.is_bound else self.initial.get("encryption_method")
        return value == EncryptionMethod.KMS


class VaultDeleteForm(forms.Form):
    confirmation = forms.CharField(label="Type the vault's name to confirm", max_length=64, required=False)


class BackupSourceForm(forms.Form):
    name = forms.CharField(max_length=64)
    source_type = forms.ChoiceField(label="Data source type", choices=SourceType.choices)
    path = forms.CharField(
        label="Path", max_length=1024, required=False, help_text="Directory (or export file) the backup worker reads."
    )
    bucket = forms.CharField(
        label="OSS bucket", max_length=63, required=False, help_text="For OSS: a bucket of this region."
    )
    prefix = forms.CharField(label="Prefix", max_length=1024, required=False)
    retain_at_least_one = forms.BooleanField(label="Retain at least one version", required=False)


class BucketRegisterForm(forms.Form):
    """An account's own OSS bucket, with an access key for it alone (rule T2)."""

    bucket = forms.CharField(label="Bucket name", max_length=63)
    access_key_id = forms.CharField(label="AccessKey ID", max_length=128)
    secret_access_key = forms.CharField(
        label="AccessKey secret", max_length=256, widget=forms.PasswordInput(render_value=False)
    )


class BackupStartForm(forms.Form):
    source = forms.ModelChoiceField(label="Backup source", queryset=BackupSource.objects.none(), empty_label=None)
    retention_days = forms.IntegerField(
        label="Retention (days)", min_value=1, required=False, help_text="Empty: kept until deleted."
    )
    fail_on_change = forms.BooleanField(label="Fail if a file changes while it is read", required=False)

    def __init__(self, *args, account, region, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].queryset = BackupSource.objects.filter(account=account, region=region)


class ArchivingForm(forms.Form):
    archive_after_days = forms.IntegerField(label="Archive points after (days)", min_value=1, required=False)


class PointFilterForm(forms.Form):
    """The vault page's points: those created between two days (UTC, both included), newest first."""

    created_from = forms.DateField(label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(label="to", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            raise forms.ValidationError("The first day must not be after the last.")
        return data

    def filter(self, points):
        """The points the valid filter keeps (all of them when the filter is empty or invalid)."""
        if not self.is_valid():
            return points
        if start := self.cleaned_data.get("created_from"):
            points = points.filter(created__gte=_midnight(start))
        if (end := self.cleaned_data.get("created_to")) and end < date.max:
            points = points.filter(created__lt=_midnight(end + timedelta(days=1)))
        return points


def _midnight(day):
    """The start of a UTC day, as a bound the (vault, created) index can serve."""
    return datetime.combine(day, time.min, tzinfo=UTC)
