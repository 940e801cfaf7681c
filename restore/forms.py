"""Restore forms: they parse; the rules are in restore.services."""

from django import forms

from vaults.models import BackupPoint, Vault, VaultType

from .models import Existing, Network, OnDamage, RestoreTarget, TargetKind
from .services import targets_for


class RestoreTargetForm(forms.Form):
    name = forms.CharField(max_length=64)
    kind = forms.ChoiceField(label="Kind of resource", choices=TargetKind.choices)
    location = forms.CharField(
        label="Directory or bucket",
        max_length=1024,
        help_text="A directory the restore worker writes; for an OSS bucket, its name.",
    )
    prefix = forms.CharField(label="Prefix (OSS)", max_length=1024, required=False)
    network = forms.ChoiceField(label="Reached over (on-premises)", choices=Network.choices, initial=Network.INTERNET)


class RestoreJobForm(forms.Form):
    vault = forms.ModelChoiceField(label="Source vault", queryset=Vault.objects.none(), empty_label="Select a vault")
    point = forms.ModelChoiceField(
        label="Backup point", queryset=BackupPoint.objects.none(), empty_label="Select a point"
    )
    target = forms.ModelChoiceField(
        label="Restore target", queryset=RestoreTarget.objects.none(), empty_label="Select a target"
    )
    sub_path = forms.CharField(label="Only this path (optional)", max_length=1024, required=False)
    existing = forms.ChoiceField(label="Existing files", choices=Existing.choices, initial=Existing.FAIL)
    on_damage = forms.ChoiceField(
        label="If backup data is damaged", choices=OnDamage.choices, initial=OnDamage.FAIL, required=False
    )

    # The point list offers the newest points; an older one is chosen from the vault page's Restore button.
    POINT_OPTIONS = 100

    def __init__(self, *args, account, region, **kwargs):
        super().__init__(*args, **kwargs)
        self._chosen = {}
        self.fields["vault"].queryset = Vault.objects.filter(account=account, region=region)
        vault = self.chosen("vault")
        if vault is not None:
            self.fields["point"].queryset = BackupPoint.objects.filter(vault=vault)
        point = self.chosen("point")
        if point is not None:
            self.fields["target"].queryset = targets_for(point)

    @property
    def chosen_vault(self):
        return self.chosen("vault")

    def chosen(self, name):
        """The object the form's data names for a field, from its own choices (looked up once)."""
        if name not in self._chosen:
            value = (self.data if self.is_bound else self.initial).get(name)
            found = None
            if value:
                found = self.fields[name].queryset.filter(pk=getattr(value, "pk", value)).first()
            self._chosen[name] = found
        return self._chosen[name]

    def vault_options(self):
        """(id, "name (type)") of the vaults to choose from, without a model object per vault."""
        rows = self.fields["vault"].queryset.order_by("name").values_list("id", "name", "vault_type")
        return [(pk, f"{name} ({VaultType(kind).label})") for pk, name, kind in rows]

    def point_options(self):
        """(the newest points of the chosen vault, with the chosen point if it is older; how many there are)."""
        points = self.fields["point"].queryset
        shown = list(points.order_by("-created")[: self.POINT_OPTIONS])
        chosen = self.chosen("point")
        if chosen is not None and chosen not in shown:
            shown.append(chosen)
        return shown, points.count()
