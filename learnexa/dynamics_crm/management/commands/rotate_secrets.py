from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from learnexa import encryption
from learnexa.dynamics_crm.models import DynamicsCrmSetting

ENCRYPTED_FIELDS = [
    "client_secret_encrypted",
    "certificate_key_encrypted",
    "token_cache_encrypted",
    "webhook_key_encrypted",
]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (client secrets, certificate keys, sign-in token "
        "caches) under the newest key in LEARNEXA_ENCRYPTION_KEYS. To rotate: put a new key "
        "first in LEARNEXA_ENCRYPTION_KEYS, keeping the old ones after it; restart; run this; "
        "then remove the old keys."
    )

    def handle(self, *args, **options):
        rotated = 0
        try:
            # The keys are checked first, so a bad one is reported even with nothing stored.
            encryption.fernet()
            with transaction.atomic():
                for setting in DynamicsCrmSetting.objects.select_for_update().only(
                    "pk", *ENCRYPTED_FIELDS
                ):
                    changed = [f for f in ENCRYPTED_FIELDS if getattr(setting, f)]
                    for name in changed:
                        setattr(setting, name, encryption.rotate(getattr(setting, name)))
                    if changed:
                        setting.save(update_fields=changed)
                        rotated += len(changed)
        except encryption.SecretUnreadable as exc:
            raise CommandError(f"{exc} Nothing was changed.") from exc
        except ImproperlyConfigured as exc:
            # A key that is not a Fernet key: say which, in one line.
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Re-encrypted {rotated} secret(s) under the newest key.")
