from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from learnexa.accounts.models import time_zones

from . import hosts
from .credentials import CertificateError, load_certificate
from .models import DynamicsCrmSetting

CredentialType = DynamicsCrmSetting.CredentialType
# Largest upload read for a certificate or a key; real ones are a few kilobytes.
MAX_CERTIFICATE_BYTES = 64 * 1024
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _comparable(name: str, value) -> object:
    """A connection field's value as the model stores it, so that retyping the same
    organization with another spelling is not a change."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    try:
        if name == "organization_uri":
            return hosts.normalize_organization_uri(value)
        if name == "authority_host":
            return hosts.normalize_authority_host(value)
    except hosts.HostNotAllowed:
        return value
    return value.lower() if name == "client_id" else value


def forget_delta_if_moved(setting: DynamicsCrmSetting, previous_uri: str) -> None:
    """Drop the saved delta link when the organization URI changes: it is a URL on the old
    organization, so continuing from it would fail; the next sync reads everything."""
    if not setting.pk or not previous_uri:
        return
    try:
        uri = hosts.normalize_organization_uri(setting.organization_uri)
    except hosts.HostNotAllowed:
        uri = setting.organization_uri
    if uri != previous_uri:
        setting.forget_delta()


class ConnectionForm(forms.ModelForm):
    """The connection to a Dynamics 365 organization, with one of three credentials. Secrets,
    private keys and token caches are write-only: never rendered back; leaving a field empty
    keeps what is saved. Only the chosen credential's fields are required; saving another
    kind of credential removes what the chosen one doesn't use."""

    CONNECTION_FIELDS = ("organization_uri", "tenant_id", "client_id", "authority_host")
    CREDENTIAL_FIELDS = {
        CredentialType.SECRET: ("client_secret", "client_secret_expires_on"),
        CredentialType.CERTIFICATE: ("certificate", "certificate_key", "certificate_passphrase"),
        CredentialType.DELEGATED: ("client_secret", "client_secret_expires_on"),
    }
    # The schedule's fields, and the frequencies each one applies to (None: all of them).
    SCHEDULE_FIELDS = {
        "sync_frequency": None,
        "sync_weekday": ("weekly",),
        "sync_monthday": ("monthly",),
        "sync_time": ("hourly", "daily", "weekly", "monthly"),
        "time_zone": ("hourly", "daily", "weekly", "monthly"),
        "full_sync_interval_days": None,
    }
    # A sync of the changes reads only people changed in Dynamics since the last sync: after
    # a change to these, everyone must be read again for it to apply to all.
    FULL_SYNC_FIELDS = (
        *CONNECTION_FIELDS,
        "credential_type",
        "client_secret",
        "certificate",
        "certificate_key",
        "create_users",
        "deactivate_missing",
    )

    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The secret's Value from Certificates & secrets in the app registration.",
    )
    certificate = forms.FileField(
        label="Certificate and private key",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".pem,.crt,.cer,.key,.pfx,.p12"}),
        help_text="A PEM file with the certificate and its private key, or a .pfx file. "
        "Register the same certificate (without the key) under Certificates & secrets → "
        "Certificates in the app registration.",
    )
    certificate_key = forms.FileField(
        label="Private key (if in a file of its own)",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".pem,.key"}),
    )
    certificate_passphrase = forms.CharField(
        label="Passphrase of the private key (if it has one)",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Used once to read the key; the key is then stored encrypted.",
    )
    time_zone = forms.CharField(
        label="Time zone",
        required=False,
        max_length=64,
        widget=forms.TextInput(
            attrs={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"}
        ),
        help_text="The company's: the schedule's times are in it. A name from the list, "
        "such as Europe/Paris, America/New_York or UTC.",
    )

    class Meta:
        model = DynamicsCrmSetting
        fields = [
            "organization_uri",
            "tenant_id",
            "client_id",
            "authority_host",
            "credential_type",
            "client_secret_expires_on",
            "sync_frequency",
            "sync_time",
            "sync_weekday",
            "sync_monthday",
            "full_sync_interval_days",
            "create_users",
            "deactivate_missing",
            "deactivation_limit_count",
            "deactivation_limit_percent",
            "learner_sign_in",
            "send_welcome_email",
        ]
        labels = {
            "organization_uri": "Organization URI",
            "tenant_id": "Azure tenant ID",
            "client_id": "Client ID",
            "authority_host": "Authority host",
            "credential_type": "Sign in to Dynamics with",
            "client_secret_expires_on": "The secret expires on",
            "sync_frequency": "Sync automatically",
            "sync_time": "At (the company's time zone)",
            "sync_weekday": "On (weekly)",
            "sync_monthday": "On day of the month (monthly)",
            "full_sync_interval_days": "Full reconciliation every (days)",
            "create_users": "Create users for people new in Dynamics",
            "deactivate_missing": "Deactivate users deleted in Dynamics or out of scope",
            "deactivation_limit_count": "Hold deactivations above this many users",
            "deactivation_limit_percent": "…or above this share of users from Dynamics (%)",
            "learner_sign_in": "People from Dynamics sign in",
            "send_welcome_email": "Send a welcome email to users the sync creates",
        }
        help_texts = {
            "organization_uri": "Your environment's address, e.g. https://contoso.crm.dynamics.com.",
            "tenant_id": "Directory (tenant) ID from the app registration's Overview page.",
            "client_id": "Application (client) ID from the app registration's Overview page.",
            "authority_host": "Change only for a national cloud.",
            "client_secret_expires_on": "As shown under Certificates & secrets; the site "
            "admins are emailed 30 and 7 days before.",
            "sync_time": "Hourly syncs run at this minute past the hour.",
            "sync_weekday": "",
            "full_sync_interval_days": "Between these, scheduled syncs read only the changes.",
            "deactivation_limit_count": "A run that would deactivate more waits for your approval.",
            "learner_sign_in": "With Microsoft, people with an account in your tenant sign in "
            "with it; contacts and anyone else get an invitation to set a password. Site "
            "admins always sign in with their password.",
            "send_welcome_email": "It tells each person how to sign in, as chosen above.",
        }
        widgets = {
            "sync_time": forms.TimeInput(attrs={"type": "time"}),
            "sync_weekday": forms.Select(choices=list(enumerate(WEEKDAYS))),
            "organization_uri": forms.URLInput(
                attrs={"placeholder": "https://contoso.crm.dynamics.com"}
            ),
            "authority_host": forms.URLInput(),
            "credential_type": forms.RadioSelect(),
            "learner_sign_in": forms.RadioSelect(),
            "client_secret_expires_on": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        self.original_type = instance.credential_type
        self.original_connection = [getattr(instance, name) for name in self.CONNECTION_FIELDS]
        self.original_secret_expiry = instance.client_secret_expires_on
        self.certificate_info = None
        # Left out of a post, the kind and the learners' sign-in stay what they were.
        self.fields["credential_type"].required = False
        self.fields["learner_sign_in"].required = False
        self.original_learner_sign_in = instance.learner_sign_in
        # The time zone is the company's (also used elsewhere), edited here for the schedule.
        self.company = getattr(instance, "company", None)
        self.original_time_zone = (self.company.time_zone if self.company else "") or "UTC"
        self.fields["time_zone"].initial = self.original_time_zone
        self.fields["sync_time"].label = f"At ({self.original_time_zone} time)"

    # -- groups, for the template -------------------------------------------------------

    def connection_fields(self):
        return [self[name] for name in (*self.CONNECTION_FIELDS, "credential_type")]

    def secret_fields(self):
        return [self[name] for name in self.CREDENTIAL_FIELDS[CredentialType.SECRET]]

    def certificate_fields(self):
        return [self[name] for name in self.CREDENTIAL_FIELDS[CredentialType.CERTIFICATE]]

    def schedule_rows(self):
        """(field, the frequencies it applies to as "weekly monthly", or "" for all)."""
        return [
            (self[name], " ".join(frequencies or ()))
            for name, frequencies in self.SCHEDULE_FIELDS.items()
        ]

    def other_fields(self):
        mine = {*self.CONNECTION_FIELDS, "credential_type", *self.SCHEDULE_FIELDS}
        for names in self.CREDENTIAL_FIELDS.values():
            mine.update(names)
        return [field for field in self if field.name not in mine]

    def time_zone_names(self) -> list[str]:
        return list(time_zones().values())

    def error_summary(self) -> list[dict]:
        """What stopped the save, in the page's order: each field's label, messages and the
        id of its input (to link to), after the errors of no one field."""
        items = [{"id": "", "label": "", "message": str(e)} for e in self.non_field_errors()]
        for field in self:
            if field.errors:
                message = " ".join(str(e) for e in field.errors)
                items.append({"id": field.auto_id, "label": field.label, "message": message})
        return items

    def fields_in_error(self) -> int:
        return sum(1 for field in self if field.errors)

    # -- what a save changes -----------------------------------------------------------

    def changed_fields(self) -> list[str]:
        """The names of the fields a valid form changes. Secrets appear by name only; what
        a post leaves out (the credential kind, the sign-in, the time zone) keeps its value."""
        kept_if_absent = {
            "credential_type": self.original_type,
            "learner_sign_in": self.original_learner_sign_in,
            "time_zone": self.original_time_zone,
        }
        changed = []
        for name in self.changed_data:
            value = self.cleaned_data.get(name)
            if name in kept_if_absent:
                if value == kept_if_absent[name]:
                    continue
            elif name in self.CONNECTION_FIELDS:
                original = self.original_connection[self.CONNECTION_FIELDS.index(name)]
                if _comparable(name, value) == _comparable(name, original):
                    continue
            elif name == "certificate_passphrase" and not self.cleaned_data.get("certificate"):
                continue  # a passphrase alone changes nothing: it only opens an upload
            changed.append(name)
        return changed

    def full_sync_fields(self, changed: list[str]) -> list[str]:
        return [name for name in changed if name in self.FULL_SYNC_FIELDS]

    def labels(self, names: list[str]) -> list[str]:
        return [str(self.fields[name].label) for name in names]

    # -- validation ---------------------------------------------------------------------

    def clean_time_zone(self) -> str:
        value = self.cleaned_data.get("time_zone", "").strip()
        if not value:
            if self.add_prefix("time_zone") in self.data:
                raise ValidationError("Choose the company's time zone, e.g. Europe/Paris or UTC.")
            return self.original_time_zone
        name = time_zones().get(value.lower())
        if name is None:
            raise ValidationError(
                f"“{value}” isn't a time zone: choose one from the list, such as "
                "Europe/Paris, America/New_York or UTC."
            )
        return name

    def _keeps(self, group: str, kind: str) -> bool:
        """Whether what is saved for `group` stays when saving with credential `kind`."""
        return group in DynamicsCrmSetting.USES[kind] and group in DynamicsCrmSetting.USES.get(
            self.original_type, ()
        )

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("credential_type") or self.original_type
        cleaned["credential_type"] = kind
        cleaned["learner_sign_in"] = cleaned.get("learner_sign_in") or self.original_learner_sign_in
        uses = DynamicsCrmSetting.USES[kind]
        if "secret" in uses:
            saved = self.instance.has_client_secret and self._keeps("secret", kind)
            if not cleaned.get("client_secret") and not saved:
                self.add_error("client_secret", "Enter the client secret.")
            expires = cleaned.get("client_secret_expires_on")
            if expires and expires != self.original_secret_expiry:
                if expires <= timezone.now().date():
                    self.add_error(
                        "client_secret_expires_on",
                        "That date has passed: an expired secret can't be used. Create a new "
                        "secret in the app registration.",
                    )
        if "certificate" in uses:
            self._clean_certificate(cleaned, kind)
        return cleaned

    def _clean_certificate(self, cleaned, kind) -> None:
        upload = cleaned.get("certificate")
        key_upload = cleaned.get("certificate_key")
        if not upload:
            if key_upload:
                self.add_error("certificate", "Upload the certificate with its private key.")
            elif not (self.instance.has_certificate and self._keeps("certificate", kind)):
                self.add_error(
                    "certificate", "Upload the certificate and its private key (PEM or .pfx)."
                )
            return
        data = []
        for name, uploaded in (("certificate", upload), ("certificate_key", key_upload)):
            if uploaded and uploaded.size > MAX_CERTIFICATE_BYTES:
                self.add_error(name, "This file is too large to be a certificate or a key.")
                return
            data.append(uploaded.read() if uploaded else None)
        try:
            self.certificate_info = load_certificate(
                data[0], data[1], cleaned.get("certificate_passphrase") or ""
            )
        except CertificateError as exc:
            self.add_error("certificate", str(exc))

    # -- saving -------------------------------------------------------------------------

    def save(self, commit=True):
        setting = super().save(commit=False)
        kind = setting.credential_type
        keep = {group for group in ("secret", "certificate") if self._keeps(group, kind)}
        connection = [getattr(setting, name) for name in self.CONNECTION_FIELDS]
        if self._keeps("token_cache", kind) and connection == self.original_connection:
            # A sign-in is for one app registration and organization.
            keep.add("token_cache")
        expiry = setting.client_secret_expires_on
        setting.forget_credentials(keep=keep)
        if "secret" in DynamicsCrmSetting.USES[kind]:
            setting.client_secret_expires_on = expiry
            if expiry != self.original_secret_expiry:
                setting.secret_reminded_days = None
        if self.cleaned_data.get("client_secret"):
            setting.set_client_secret(self.cleaned_data["client_secret"])
        if self.certificate_info is not None:
            setting.set_certificate(self.certificate_info)
        time_zone = self.cleaned_data.get("time_zone") or self.original_time_zone
        if self.company is not None:
            self.company.time_zone = time_zone  # before the schedule is worked out in it
        if commit:
            forget_delta_if_moved(setting, self.original_connection[0])
            setting.schedule_next()
            # Only what the form owns: a sync may be updating its own state meanwhile.
            owned = [
                *self.Meta.fields,
                *DynamicsCrmSetting.credential_field_names(),
                "next_sync_at",
                "updated_at",
            ]
            setting.save(update_fields=owned if setting.pk else None)
            if self.company is not None and time_zone != self.original_time_zone:
                self.company.save(update_fields=["time_zone"])
        return setting
