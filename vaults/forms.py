"""Vault forms: they parse input; the rules are checked by `vaults.services`."""

from django import forms

from console.models import ResourceGroup

from .models import EncryptionMethod, KmsKey, VaultType


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
