"""Changes in seconds: Dynamics posts to a company's webhook address when a user or contact
changes, and Learnexa queues a change-only sync of that company.

A call is only a hint. Nothing in its body is written anywhere: the sync re-reads Dynamics
with the company's own credentials, so a forged or replayed call can at worst queue a sync
(coalesced with the one already queued). Scheduled syncs stay as the safety net, since
Dataverse delivers each event at most once (plus one retry on 502/503/504).

Authentication is Dataverse's "WebhookKey" type: Dynamics appends ``?code=<key>`` to the
address. The key is generated here, kept as a Fernet token, compared in constant time and
rotatable. The address carries an opaque per-company id rather than the company's slug, so
it tells nothing about who the company is, and an unknown id is answered exactly like a
wrong key (401): nobody can probe which companies exist.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learnexa import encryption

from .credentials import AuthenticationError
from .dataverse import DataverseClient, DataverseError
from .mapping import Mapping
from .models import DynamicsCrmSetting, SyncRun, WebhookCounter

# A RemoteExecutionContext is a few KB; Dataverse trims anything above 256 KB itself.
MAX_BODY_BYTES = 1024 * 1024
# Calls per company per minute before 429. A bulk import in Dynamics may fire thousands of
# events: the first queues a sync, the rest join it, so refusing some loses nothing that the
# queued sync won't read (and the schedule is the safety net).
DEFAULT_MAX_PER_MINUTE = 1200
TRIGGER = SyncRun.Trigger.WEBHOOK  # the runs a webhook queues
# setting.source_table → the table's logical name, as events name it.
ENTITY_OF_SOURCE = {"systemusers": "systemuser", "contacts": "contact"}
MESSAGES = ("Create", "Update", "Delete")
# Dataverse's WebHook registration values (see the reference notes, §1.1 and §1.3).
CONTRACT_WEBHOOK = 8
AUTHTYPE_WEBHOOK_KEY = 4
MESSAGEFORMAT_JSON = 2
STAGE_POST_OPERATION = 40
MODE_ASYNCHRONOUS = 1
# Compared against when the id is unknown, so that both failures take the same path.
_NO_KEY = secrets.token_urlsafe(32)


def max_per_minute() -> int:
    return int(getattr(settings, "LEARNEXA_WEBHOOK_MAX_PER_MINUTE", DEFAULT_MAX_PER_MINUTE))


def entity_of(setting: DynamicsCrmSetting) -> str:
    return ENTITY_OF_SOURCE.get(setting.source_table, "systemuser")


# -- the key ---------------------------------------------------------------------------


def ensure_key(setting: DynamicsCrmSetting) -> None:
    """Give the company a webhook address and key, if it has none yet."""
    if setting.webhook_id and setting.webhook_key_encrypted:
        return
    rotate_key(setting)


def rotate_key(setting: DynamicsCrmSetting) -> str:
    """A new key (the old one stops working at once); the address stays. Returns the key."""
    key = secrets.token_urlsafe(32)
    setting.webhook_id = setting.webhook_id or secrets.token_hex(16)
    setting.webhook_key_encrypted = encryption.encrypt(key)
    setting.webhook_key_set_at = timezone.now()
    setting.save(update_fields=["webhook_id", "webhook_key_encrypted", "webhook_key_set_at"])
    WebhookCounter.objects.get_or_create(setting=setting)
    return key


def webhook_key(setting: DynamicsCrmSetting) -> str:
    if not setting.webhook_key_encrypted:
        return ""
    return encryption.decrypt(setting.webhook_key_encrypted)


def key_matches(setting: DynamicsCrmSetting | None, given: str) -> bool:
    expected = _NO_KEY
    if setting is not None and setting.webhook_key_encrypted:
        try:
            expected = webhook_key(setting)
        except encryption.SecretUnreadable:
            expected = _NO_KEY
    same = hmac.compare_digest(given.encode(), expected.encode())
    return same and expected is not _NO_KEY


# -- the organization id ---------------------------------------------------------------


def remember_organization_id(setting: DynamicsCrmSetting, who: dict) -> str:
    """Store WhoAmI's OrganizationId unless one is stored; returns the stored one."""
    found = str(who.get("OrganizationId") or "").lower()
    if found and not setting.organization_id:
        DynamicsCrmSetting.objects.filter(pk=setting.pk, organization_id="").update(
            organization_id=found
        )
        setting.organization_id = found
    return setting.organization_id


def learn_organization_id(setting: DynamicsCrmSetting, client: DataverseClient | None = None):
    """The company's organization id, asking Dynamics (WhoAmI) the first time. "" if it
    can't be learnt now (then the receiver trusts the key alone)."""
    if setting.organization_id:
        return setting.organization_id
    from .sync import open_client  # the sync engine, only when Dynamics must be asked

    try:
        if client is not None:
            return remember_organization_id(setting, client.whoami())
        with open_client(setting, max_retries=0, max_throttle_wait=5, timeout=10) as opened:
            return remember_organization_id(setting, opened.whoami())
    except (AuthenticationError, DataverseError, ValueError, encryption.SecretUnreadable):
        return ""


# -- receiving -------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    counter: str  # which WebhookCounter field the call adds to ("" for none)
    detail: str = ""


def _window(counter: WebhookCounter, now) -> bool:
    """Count a call in the company's minute; False if the minute is full."""
    if counter.window_started_at is None or now - counter.window_started_at >= timedelta(minutes=1):
        counter.window_started_at = now
        counter.window_count = 0
    if counter.window_count >= max_per_minute():
        return False
    counter.window_count += 1
    return True


def _decide(setting: DynamicsCrmSetting, body: bytes, entity_header: str) -> Outcome:
    """Whether an authenticated call is for this company's organization and table."""
    try:
        context = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Outcome(400, "refused", "The body is not JSON.")
    if not isinstance(context, dict):
        return Outcome(400, "refused", "The body is not a JSON object.")
    if not setting.has_credential:
        # Disconnected: a sync would only fail and raise a failure banner.
        return Outcome(202, "ignored", "No credential is saved: nothing syncs until one is.")
    entity = str(context.get("PrimaryEntityName") or entity_header or "").lower()
    if entity_header and entity != entity_header.lower():
        return Outcome(202, "ignored", "The header and the body name different tables.")
    if entity != entity_of(setting):
        return Outcome(202, "ignored", f"Not the {entity_of(setting)} table.")
    organization = str(context.get("OrganizationId") or "").lower()
    expected = learn_organization_id(setting)
    if expected and organization != expected.lower():
        return Outcome(202, "ignored", "Another organization.")
    return Outcome(204, "received")


def receive(
    webhook_id: str, code: str, body_reader, content_length: int | None, entity_header: str
) -> Outcome:
    """Answer one call. `body_reader(n)` reads at most n bytes of the body."""
    setting = DynamicsCrmSetting.objects.filter(webhook_id=webhook_id).first()
    if not key_matches(setting, code):
        return Outcome(401, "", "Unknown address or wrong key.")
    assert setting is not None
    if content_length is not None and content_length > MAX_BODY_BYTES:
        outcome = Outcome(413, "refused", "The body is over 1 MB.")
    else:
        body = body_reader(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            outcome = Outcome(413, "refused", "The body is over 1 MB.")
        else:
            outcome = _decide(setting, body, entity_header)
    now = timezone.now()
    with transaction.atomic():
        # Locking the counter row also makes a company's calls queue their syncs one after
        # another, so that a burst can't create several queued runs side by side.
        counter, _ = WebhookCounter.objects.select_for_update().get_or_create(setting=setting)
        counter.last_event_at = now
        if not _window(counter, now):
            outcome = Outcome(429, "refused", "Too many calls this minute.")
        if outcome.counter:
            setattr(counter, outcome.counter, getattr(counter, outcome.counter) + 1)
        counter.save()
        if outcome.status == 204:
            from .jobs import enqueue_sync

            enqueue_sync(setting, TRIGGER)
    return outcome


# -- registering in Dynamics -----------------------------------------------------------


class RegistrationError(Exception):
    """Registering the webhook in Dynamics failed; the message says what to fix."""


PRIVILEGE_ADVICE = (
    "The application user isn't allowed to register webhooks (Dynamics answered 403{code}: "
    "{said}). Give it a security role with organization-level Create, Read and Delete on "
    "Service Endpoint and on Sdk Message Processing Step, and Read on Sdk Message and Sdk "
    "Message Filter (prvCreateServiceEndpoint, prvReadServiceEndpoint, "
    "prvDeleteServiceEndpoint, prvCreateSdkMessageProcessingStep, prvReadSdkMessage...): the "
    "System Customizer or System Administrator role has them. Or register the webhook "
    "yourself with the Plugin Registration Tool, as shown on this page."
)


def _privilege_message(exc: DataverseError) -> str:
    said = str(exc).split("Dynamics said: ", 1)[-1]
    missing = re.search(r"missing (prv\w+) privilege", said)
    if missing:
        said = f"the application user is missing the {missing.group(1)} privilege"
    return PRIVILEGE_ADVICE.format(code=f" {exc.code}" if exc.code else "", said=said)


def _id_of(created: dict, key: str) -> str:
    if created.get(key):
        return str(created[key]).lower()
    found = re.search(r"\(([0-9a-fA-F-]{36})\)", str(created.get("@odata.id", "")))
    if not found:
        raise RegistrationError("Dynamics didn't say the id of what it created.")
    return found.group(1).lower()


def register(setting: DynamicsCrmSetting, address: str) -> dict:
    """Create (or replace) the company's webhook in Dynamics: a serviceendpoint (WebHook,
    WebhookKey) and an asynchronous PostOperation step for each of Create, Update and Delete
    of the synced table. Returns {"endpoint": id, "steps": [ids]}."""
    from .sync import open_client

    ensure_key(setting)
    entity = entity_of(setting)
    try:
        with open_client(setting, max_retries=1, max_throttle_wait=30) as client:
            learn_organization_id(setting, client)
            api = client.api_root
            # What an earlier registration made goes first, so that there is one of each.
            for step_id in setting.webhook_step_ids or []:
                client.delete(f"{api}/sdkmessageprocessingsteps({step_id})")
            if setting.webhook_endpoint_id:
                client.delete(f"{api}/serviceendpoints({setting.webhook_endpoint_id})")
            DynamicsCrmSetting.objects.filter(pk=setting.pk).update(
                webhook_endpoint_id="", webhook_step_ids=[]
            )
            names = " or ".join(f"name eq '{m}'" for m in MESSAGES)
            found = client.get(f"{api}/sdkmessages?$select=sdkmessageid,name&$filter={names}").get(
                "value", []
            )
            message_ids = {row.get("name"): row.get("sdkmessageid") for row in found}
            missing = [m for m in MESSAGES if not message_ids.get(m)]
            if missing:
                raise RegistrationError(f"Dynamics has no {', '.join(missing)} message.")
            endpoint = client.post(
                f"{api}/serviceendpoints",
                {
                    "name": f"Learnexa user sync ({setting.company.slug})"[:256],
                    "url": address,
                    "contract": CONTRACT_WEBHOOK,
                    "authtype": AUTHTYPE_WEBHOOK_KEY,
                    "authvalue": webhook_key(setting),
                    "messageformat": MESSAGEFORMAT_JSON,
                },
            )
            endpoint_id = _id_of(endpoint, "serviceendpointid")
            DynamicsCrmSetting.objects.filter(pk=setting.pk).update(webhook_endpoint_id=endpoint_id)
            steps = []
            try:
                for message in MESSAGES:
                    filters = client.get(
                        f"{api}/sdkmessagefilters?$select=sdkmessagefilterid&$filter="
                        f"primaryobjecttypecode eq '{entity}' and _sdkmessageid_value eq "
                        f"{message_ids[message]}"
                    ).get("value", [])
                    if not filters:
                        raise RegistrationError(f"Dynamics has no {message} event for {entity}.")
                    body = {
                        "name": f"Learnexa: {message} of {entity}",
                        "stage": STAGE_POST_OPERATION,
                        "mode": MODE_ASYNCHRONOUS,
                        "rank": 1,
                        "supporteddeployment": 0,
                        "asyncautodelete": True,
                        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                        "sdkmessageid@odata.bind": f"/sdkmessages({message_ids[message]})",
                        "sdkmessagefilterid@odata.bind": (
                            f"/sdkmessagefilters({filters[0]['sdkmessagefilterid']})"
                        ),
                    }
                    if message == "Update":
                        # Only changes to what the sync reads call Learnexa.
                        columns = Mapping.for_setting(setting).columns
                        body["filteringattributes"] = ",".join(sorted(set(columns)))
                    created = client.post(f"{api}/sdkmessageprocessingsteps", body)
                    steps.append(_id_of(created, "sdkmessageprocessingstepid"))
            except (DataverseError, RegistrationError):
                # Nothing half-registered stays behind.
                for step_id in steps:
                    client.delete(f"{api}/sdkmessageprocessingsteps({step_id})")
                client.delete(f"{api}/serviceendpoints({endpoint_id})")
                DynamicsCrmSetting.objects.filter(pk=setting.pk).update(webhook_endpoint_id="")
                raise
    except DataverseError as exc:
        if exc.status == 403:
            raise RegistrationError(_privilege_message(exc)) from exc
        raise RegistrationError(str(exc)) from exc
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(
        webhook_endpoint_id=endpoint_id, webhook_step_ids=steps
    )
    setting.webhook_endpoint_id, setting.webhook_step_ids = endpoint_id, steps
    return {"endpoint": endpoint_id, "steps": steps}
