from __future__ import annotations

from django import forms

from .models import DynamicsCrmSetting


class ConnectionForm(forms.ModelForm):
    """The connection to a Dynamics 365 organization. The secret is write-only: it is never
    rendered back, and leaving it empty keeps the one already saved."""

    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The secret's Value from Certificates & secrets in the app registration.",
    )

    class Meta:
        model = DynamicsCrmSetting
        fields = ["organization_uri", "tenant_id", "client_id", "authority_host", "sync_frequency"]
        labels = {
            "organization_uri": "Organization URI",
            "tenant_id": "Azure tenant ID",
            "client_id": "Client ID",
            "authority_host": "Authority host",
            "sync_frequency": "Sync automatically",
        }
        help_texts = {
            "organization_uri": "Your environment's address, e.g. https://contoso.crm.dynamics.com.",
            "tenant_id": "Directory (tenant) ID from the app registration's Overview page.",
            "client_id": "Application (client) ID from the app registration's Overview page.",
            "authority_host": "Change only for a national cloud.",
        }
        widgets = {
            "organization_uri": forms.URLInput(
                attrs={"placeholder": "https://contoso.crm.dynamics.com"}
            ),
            "authority_host": forms.URLInput(),
        }

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("client_secret") and not self.instance.has_client_secret:
            self.add_error("client_secret", "Enter the client secret.")
        return cleaned

    def save(self, commit=True):
        setting = super().save(commit=False)
        if self.cleaned_data.get("client_secret"):
            setting.set_client_secret(self.cleaned_data["client_secret"])
        if commit:
            setting.save()
        return setting
