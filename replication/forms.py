"""The Initiate Backup Vault Replication panel's form: it parses; the rules are in services."""

from django import forms

from console.models import Region, ResourceGroup
from vaults.models import EncryptionMethod, KmsKey, Vault

from .services import destination_regions, free_target_vaults

SELECT, CREATE = "select", "create"


class InitiateReplicationForm(forms.Form):
    mode = forms.ChoiceField(
        choices=[(SELECT, "Select Replication Target Vault"), (CREATE, "Create Replication Target Vault")],
        initial=SELECT,
        widget=forms.RadioSelect,
    )
    destination_region = forms.ModelChoiceField(
        label="Destination Region", queryset=Region.objects.none(), empty_label="Select a region", to_field_name="code"
    )
    target_vault = forms.ModelChoiceField(
        label="Replication Target Vault", queryset=Vault.objects.none(), required=False, empty_label="Select a vault"
    )
    name = forms.CharField(label="Vault Name", max_length=64, required=False)
    description = forms.CharField(label="Vault Description", max_length=255, required=False)
    resource_group = forms.ModelChoiceField(
        label="Vault Resource Group", queryset=ResourceGroup.objects.none(), required=False, empty_label=None
    )
    # Create mode only (Select mode never shows it): empty means the source's method, as the panel preselects.
    encryption_method = forms.ChoiceField(
        label="Vault Encryption Method", choices=EncryptionMethod.choices, required=False
    )
    kms_key = forms.ModelChoiceField(
        label="KMS KeyId",
        queryset=KmsKey.objects.none(),
        required=False,
        to_field_name="key_id",
        empty_label="Select a key",
    )

    def __init__(self, *args, source_vault, **kwargs):
        super().__init__(*args, **kwargs)
        self.source_vault = source_vault
        account = source_vault.account
        self.fields["destination_region"].queryset = destination_regions(source_vault)
        self.fields["resource_group"].queryset = ResourceGroup.objects.filter(account=account)
        self.fields["encryption_method"].initial = source_vault.encryption_method
        region = self.chosen_region()
        if region is not None:
            self.fields["target_vault"].queryset = free_target_vaults(account, region, source_vault.encryption_method)
            self.fields["kms_key"].queryset = KmsKey.objects.filter(account=account, region=region)

    def value(self, name):
        if self.is_bound:
            return self.data.get(name) or self.fields[name].initial
        return self.initial.get(name, self.fields[name].initial)

    def chosen_region(self):
        code = self.value("destination_region")
        return self.fields["destination_region"].queryset.filter(code=code).first() if code else None

    @property
    def chosen_encryption(self):
        return self.value("encryption_method")

    @property
    def is_create(self):
        return self.value("mode") == CREATE

    @property
    def shown_fields(self):
        """The fields the panel renders in its current mode."""
        if self.is_create:
            return {
                "mode",
                "destination_region",
                "name",
                "description",
                "resource_group",
                "encryption_method",
                "kms_key",
            }
        return {"mode", "destination_region", "target_vault"}

    @property
    def unshown_errors(self):
        """Errors of fields this mode does not render: shown above the form, so no refusal is silent."""
        return [
            f"{self.fields[name].label}: {error}"
            for name, errors in self.errors.items()
            if name != "__all__" and name not in self.shown_fields
            for error in errors
        ]

    @property
    def wants_kms(self):
        return self.value("encryption_method") == EncryptionMethod.KMS


class StopReplicationForm(forms.Form):
    confirmation = forms.CharField(label="Type the source vault's name to confirm", max_length=64, required=False)
