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
        fields = [
            "organization_uri",
            "tenant_id",
            "client_id",
            "authority_host",
            "sync_frequency",
            "sync_time",
            "sync_weekday",
            "sync_monthday",
            "full_sync_interval_days",
            "create_users",
            "deactivate_missing",
            "deactivation_limit_count",
            "deactivation_limit_percent",
            "send_welcome_email",
        ]
        labels = {
            "organization_uri": "Organization URI",
            "tenant_id": "Azure tenant ID",
            "client_id": "Client ID",
            "authority_host": "Authority host",
            "sync_frequency": "Sync automatically",
            "sync_time": "At (the company's time zone)",
            "sync_weekday": "On (weekly)",
            "sync_monthday": "On day of the month (monthly)",
            "full_sync_interval_days": "Full reconciliation every (days)",
            "create_users": "Create users for people new in Dynamics",
            "deactivate_missing": "Deactivate users deleted in Dynamics or out of scope",
            "deactivation_limit_count": "Hold deactivations above this many users",
            "deactivation_limit_percent": "…or above this share of users from Dynamics (%)",
            "send_welcome_email": "Send a welcome email to users the sync creates",
        }
        help_texts = {
            "organization_uri": "Your environment's address, e.g. https://contoso.crm.dynamics.com.",
            "tenant_id": "Directory (tenant) ID from the app registration's Overview page.",
            "client_id": "Application (client) ID from the app registration's Overview page.",
            "authority_host": "Change only for a national cloud.",
            "sync_time": "Hourly syncs run at this minute past the hour.",
            "full_sync_interval_days": "Between these, scheduled syncs read only the changes.",
            "deactivation_limit_count": "A run that would deactivate more waits for your approval.",
        }
        widgets = {
            "sync_time": forms.TimeInput(attrs={"type": "time"}),
            "sync_weekday": forms.Select(
                choices=list(
                    enumerate(
                        [
                            "Monday",
                            "Tuesday",
                            "Wednesday",
                            "Thursday",
                            "Friday",
                            "Saturday",
                            "Sunday",
                        ]
                    )
                )
            ),
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
            setting.schedule_next()
            # Only what the form owns: a sync may be updating its own state meanwhile.
            owned = [
                *self.Meta.fields,
                "client_secret_encrypted",
                "client_secret_set_at",
                "next_sync_at",
                "updated_at",
            ]
            setting.save(update_fields=owned if setting.pk else None)
        return setting
