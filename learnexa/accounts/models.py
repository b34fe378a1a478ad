"""The platform core: companies and their users.

The core knows nothing of Dynamics beyond the two ids an integration may link a user to;
integrations depend on it, never the other way round.
"""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models import F
from django.db.models.functions import Collate, Lower
from django.utils.crypto import salted_hmac


class CaseFolded(Lower):
    """A text column as it is compared ignoring case: LOWER(column); on SQLite, the column
    with the NOCASE collation instead. The two compare alike there (SQLite's LOWER folds
    only ASCII letters, as NOCASE does), but an index on NOCASE is an index on a column,
    while an index on LOWER() is one on an expression, which makes SQLite keep a copy of
    every page each multi-row INSERT touches (its statement journal): a third more CPU
    for a first sync's inserts. Compare it with values already lowercased."""

    def as_sqlite(self, compiler, connection, **extra_context):
        return Collate(*self.get_source_expressions(), "NOCASE").as_sql(compiler, connection)


@cache
def time_zones() -> dict[str, str]:
    """Every IANA time zone this system knows, by its lowercased name (reading them walks the
    tz database, so once per process). A company's schedule is worked out in one of them."""
    return {name.lower(): name for name in sorted(zoneinfo.available_timezones())}


class Company(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "companies"
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.name

    def site_admins(self) -> models.QuerySet[User]:
        return self.users.filter(is_site_admin=True, is_active=True)


class UserManager(BaseUserManager["User"]):
    def with_email(self, email: str) -> models.QuerySet[User]:
        """Users with this email in any company (it is unique per company only), compared
        case-insensitively, as the (email ignoring case, company) index has it."""
        return self.annotate(email_key=CaseFolded("email")).filter(email_key=email.strip().lower())

    def for_email(self, company: Company, email: str) -> models.QuerySet[User]:
        """Users of `company` with this email, compared case-insensitively."""
        return self.with_email(email).filter(company=company)

    def create_site_admin(self, company: Company, email: str, password: str, **fields) -> User:
        user = self.model(company=company, email=email.strip(), is_site_admin=True, **fields)
        user.set_password(password)
        user.save()
        return user


class User(AbstractBaseUser):
    """A person on the platform: a learner, and perhaps a site admin of their company."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Added by hand"
        IMPORT = "import", "Imported from a file"
        DYNAMICS_CRM = "dynamics_crm", "Dynamics 365"

    # Not indexed on its own: every index below starts with the company.
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="users", db_index=False
    )
    # Unique per company, compared case-insensitively (see Meta); kept as the source wrote it.
    email = models.CharField(max_length=254)
    first_name = models.CharField(max_length=256, blank=True)
    last_name = models.CharField(max_length=256, blank=True)
    job_title = models.CharField(max_length=128, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    city = models.CharField(max_length=128, blank=True)
    country = models.CharField(max_length=128, blank=True)
    employee_id = models.CharField(max_length=100, blank=True)
    department = models.CharField(max_length=160, blank=True)
    is_active = models.BooleanField(default=True)
    is_site_admin = models.BooleanField(default=False)
    # Always filtered within a company, through the company's indexes.
    created_source = models.CharField(max_length=32, choices=Source.choices, default=Source.MANUAL)
    # The Dynamics records this user is linked to. Set by an integration, never by hand.
    dynamics_systemuser_id = models.UUIDField(null=True, blank=True)
    # ...or the Dynamics contact, where a company syncs its customers or partners.
    dynamics_contact_id = models.UUIDField(null=True, blank=True)
    entra_object_id = models.UUIDField(null=True, blank=True)
    # Set when a sync deactivated the user, so that a sync only ever reactivates the users
    # it deactivated itself and never undoes an admin's own suspension.
    deactivated_by_sync_at = models.DateTimeField(null=True, blank=True)
    # Raised each time the user loses access: every session and every invitation link made
    # before then stops working, and stays stopped if the user is reactivated.
    sign_in_epoch = models.PositiveIntegerField(default=0)
    # When the last invitation (a link to set a password) was emailed, to space them out.
    invitation_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    # Emails are unique per company, not globally: the login backend resolves the company.
    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        db_table = "users"
        constraints = [
            models.UniqueConstraint(
                CaseFolded("email"), "company", name="users_email_unique_per_company"
            ),
            models.UniqueConstraint(
                fields=["company", "dynamics_systemuser_id"],
                condition=models.Q(dynamics_systemuser_id__isnull=False),
                name="users_systemuser_unique_per_company",
            ),
            models.UniqueConstraint(
                fields=["company", "dynamics_contact_id"],
                condition=models.Q(dynamics_contact_id__isnull=False),
                name="users_contact_unique_per_company",
            ),
        ]
        indexes = [
            models.Index(fields=["company", "last_name", "first_name"]),
            # Matching Dynamics records to users by Entra object id, within the company.
            models.Index(fields=["company", "entra_object_id"], name="users_company_entra"),
            # Counting a company's active, linked users (the Users filters, the limits).
            models.Index(
                fields=["company", "is_active", "dynamics_systemuser_id"],
                name="users_company_active_link",
            ),
            # A company's active site admins (told of every held or failed sync): without it
            # SQLite reads every active user for them (5 s among a million). Not a partial
            # index: SQLite can't use one for a condition given as a parameter.
            models.Index(
                fields=["company", "is_site_admin", "is_active"],
                name="users_company_site_admins",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def _get_session_auth_hash(self, secret=None):
        # Django signs each session with a hash of the password; the epoch joins it, so that
        # raising the epoch ends every session of the user at their next request.
        if not self.sign_in_epoch:
            return super()._get_session_auth_hash(secret)
        return salted_hmac(
            "learnexa.accounts.User.session",
            f"{self.password}|{self.sign_in_epoch}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    def set_active(self, active: bool) -> None:
        """An admin's own suspension or reactivation. Suspending ends the user's sessions
        and voids their invitation links; the sync never undoes it."""
        self.is_active = active
        self.deactivated_by_sync_at = None
        fields = ["is_active", "deactivated_by_sync_at", "updated_at"]
        if not active:
            self.sign_in_epoch = F("sign_in_epoch") + 1
            fields.append("sign_in_epoch")
        self.save(update_fields=fields)
        self.refresh_from_db(fields=["sign_in_epoch"])


class FailedLogin(models.Model):
    """A failed sign-in, kept briefly to slow down password guessing across every web
    process (a per-process cache would multiply the limit by the number of processes)."""

    email = models.CharField(max_length=254, db_index=True)
    ip = models.GenericIPAddressField(null=True, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "failed_logins"

    def __str__(self) -> str:
        return f"{self.email} from {self.ip} at {self.at:%Y-%m-%d %H:%M}"


class LinkRequest(models.Model):
    """A request, from the public sign-in pages, to email a link to set a password; kept for
    an hour to limit them per email and per address across every web process."""

    email = models.CharField(max_length=254, db_index=True)
    ip = models.GenericIPAddressField(null=True, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "link_requests"

    def __str__(self) -> str:
        return f"{self.email} from {self.ip} at {self.at:%Y-%m-%d %H:%M}"
