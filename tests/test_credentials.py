"""The certificate credential, switching and removing credentials, what the page never
shows, and the expiry reminders."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from learnexa import encryption
from learnexa.dynamics_crm import schedule
from learnexa.dynamics_crm.credentials import CertificateError, load_certificate
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.sync import execute_run

PASSPHRASE = "correct horse battery staple"


def make_certificate(*, days=365, key=None, not_before_days=-1, cn="learnexa-sync"):
    """A self-signed certificate; returns (certificate PEM, private key, certificate)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=not_before_days))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key, cert


def key_pem(key, passphrase: str | None = None) -> bytes:
    encryption_algorithm = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption_algorithm
    )


def sha1_hex(cert) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


def sync(setting) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    return execute_run(run)


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def post_connection(admin_client, simulator, connection_form, **fields):
    info = simulator.info
    data = connection_form(
        organization_uri=info["organization_uri"],
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        authority_host=info["authority_host"],
        **fields,
    )
    return admin_client.post(reverse("dynamics_crm:integration"), data)


# -- the certificate credential ---------------------------------------------------------


@pytest.mark.django_db
def test_a_sync_with_a_certificate_uploaded_in_the_form(
    admin_client, setting, simulator, connection_form
):
    cert_pem, key, cert = make_certificate(days=200)
    simulator.register_certificate(cert_pem)
    # One PEM file with the certificate and the encrypted key, and the passphrase.
    upload = SimpleUploadedFile("learnexa.pem", cert_pem + key_pem(key, PASSPHRASE))
    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="certificate",
        certificate=upload,
        certificate_passphrase=PASSPHRASE,
    )
    assert response.status_code == 302, response.content.decode()[:3000]

    setting.refresh_from_db()
    assert setting.credential_type == "certificate"
    assert setting.certificate_thumbprint == sha1_hex(cert)
    assert setting.certificate_expires_at == cert.not_valid_after_utc
    # The key is stored encrypted, without its passphrase; the secret is gone.
    stored_key = serialization.load_pem_private_key(
        setting.certificate_private_key().encode(), None
    )
    assert stored_key.private_numbers() == key.private_numbers()
    assert b"PRIVATE KEY" not in setting.certificate_key_encrypted.encode()
    assert not setting.has_client_secret and setting.client_secret_encrypted == ""

    simulator.clear_request_log()
    run = sync(setting)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.created > 100
    token_requests = [e for e in simulator.request_log() if e["path"].endswith("/token")]
    assert [e["status"] for e in token_requests] == [200]

    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert sha1_hex(cert) in page
    assert cert.not_valid_after_utc.strftime("%Y") in page
    assert "PRIVATE KEY" not in page and setting.certificate_key_encrypted not in page


@pytest.mark.django_db
def test_certificate_and_key_in_two_files(admin_client, setting, simulator, connection_form):
    cert_pem, key, cert = make_certificate()
    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="certificate",
        certificate=SimpleUploadedFile("cert.pem", cert_pem),
        certificate_key=SimpleUploadedFile("key.pem", key_pem(key)),
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.certificate_thumbprint == sha1_hex(cert)


@pytest.mark.django_db
def test_an_unregistered_certificate_fails_the_sync_in_plain_words(setting, simulator):
    cert_pem, key, cert = make_certificate()
    setting.credential_type = "certificate"
    setting.forget_credentials(keep={"certificate"})
    setting.set_certificate(load_certificate(cert_pem, key_pem(key)))
    setting.save()

    run = sync(setting)

    assert run.status == SyncRun.Status.FAILED
    assert "isn't registered on the app registration" in run.error
    assert "Certificates & secrets → Certificates" in run.error
    assert sha1_hex(cert) in run.error
    assert "AADSTS700027" in run.error  # what Entra ID said, for support


@pytest.mark.django_db
def test_a_wrong_certificate_is_refused_even_if_another_is_registered(setting, simulator):
    registered, _, _ = make_certificate(cn="registered")
    simulator.register_certificate(registered)
    cert_pem, key, _ = make_certificate(cn="another")
    setting.credential_type = "certificate"
    setting.set_certificate(load_certificate(cert_pem, key_pem(key)))
    setting.save()

    run = sync(setting)

    assert run.status == SyncRun.Status.FAILED
    assert "isn't registered on the app registration" in run.error


def test_a_pfx_file_with_a_password_is_read():
    cert_pem, key, cert = make_certificate()
    pfx = pkcs12.serialize_key_and_certificates(
        b"learnexa",
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    )
    loaded = load_certificate(pfx, None, PASSPHRASE)
    assert loaded.thumbprint == sha1_hex(cert)
    with pytest.raises(CertificateError, match="password"):
        load_certificate(pfx)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_pem", "isn't a PEM file"),
        ("no_key", "No private key was found"),
        ("no_certificate", "No certificate was found"),
        ("other_key", "doesn't belong to the certificate"),
        ("expired", "The certificate expired on"),
        ("not_yet_valid", "isn't valid until"),
        ("no_passphrase", "protected by a passphrase"),
        ("wrong_passphrase", "passphrase doesn't unlock"),
        ("ec_key", "must be an RSA key"),
    ],
)
def test_unusable_uploads_are_explained(case, message):
    cert_pem, key, _ = make_certificate()
    certificate, private_key, passphrase = cert_pem, key_pem(key), ""
    if case == "not_pem":
        certificate, private_key = b"Just some text, not a certificate.", None
    elif case == "no_key":
        private_key = None
    elif case == "no_certificate":
        certificate = b""
    elif case == "other_key":
        private_key = key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif case == "expired":
        certificate, key, _ = make_certificate(days=-1, not_before_days=-30)
        private_key = key_pem(key)
    elif case == "not_yet_valid":
        certificate, key, _ = make_certificate(not_before_days=3)
        private_key = key_pem(key)
    elif case == "no_passphrase":
        private_key = key_pem(key, PASSPHRASE)
    elif case == "wrong_passphrase":
        private_key, passphrase = key_pem(key, PASSPHRASE), "not it"
    elif case == "ec_key":
        certificate, key, _ = make_certificate(key=ec.generate_private_key(ec.SECP256R1()))
        private_key = key_pem(key)
    with pytest.raises(CertificateError, match=message):
        load_certificate(certificate, private_key, passphrase)


@pytest.mark.django_db
def test_a_bad_upload_is_shown_on_the_form_and_nothing_is_stored(
    admin_client, setting, simulator, connection_form
):
    cert_pem, _, _ = make_certificate()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="certificate",
        certificate=SimpleUploadedFile("c.pem", cert_pem + key_pem(other_key)),
    )
    assert response.status_code == 200
    assert "doesn&#x27;t belong to the certificate" in response.content.decode()
    setting.refresh_from_db()
    assert setting.credential_type == "secret" and setting.has_client_secret
    assert not setting.has_certificate
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_the_certificate_is_required_when_chosen(admin_client, setting, simulator, connection_form):
    response = post_connection(
        admin_client, simulator, connection_form, credential_type="certificate"
    )
    assert response.status_code == 200
    assert "Upload the certificate and its private key" in response.content.decode()


# -- switching and disconnecting ---------------------------------------------------------


@pytest.mark.django_db
def test_switching_kind_removes_what_the_new_kind_does_not_use(
    admin_client, setting, simulator, connection_form
):
    cert_pem, key, _ = make_certificate()
    simulator.register_certificate(cert_pem)
    post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="certificate",
        certificate=SimpleUploadedFile("c.pem", cert_pem + key_pem(key)),
    )
    setting.refresh_from_db()
    assert setting.has_certificate and not setting.has_client_secret

    # Back to a secret: the key and certificate go; the secret must be entered again.
    response = post_connection(admin_client, simulator, connection_form, credential_type="secret")
    assert response.status_code == 200 and "Enter the client secret." in response.content.decode()
    setting.refresh_from_db()
    assert setting.has_certificate  # an invalid form changes nothing

    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="secret",
        client_secret=simulator.info["client_secret"],
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.has_client_secret
    assert setting.certificate_key_encrypted == setting.certificate_pem == ""
    assert setting.certificate_thumbprint == "" and setting.certificate_expires_at is None


@pytest.mark.django_db
def test_disconnect_removes_every_stored_credential_and_stops_the_schedule(
    admin_client, setting, simulator
):
    cert_pem, key, _ = make_certificate()
    setting.set_certificate(load_certificate(cert_pem, key_pem(key)))
    setting.token_cache_encrypted = encryption.encrypt("{}")
    setting.client_secret_expires_on = timezone.now().date() + dt.timedelta(days=90)
    setting.save()
    assert setting.next_sync_at is not None

    response = admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})

    assert response.status_code == 302
    setting.refresh_from_db()
    for name in DynamicsCrmSetting.credential_field_names():
        assert getattr(setting, name) in ("", None), name
    assert setting.next_sync_at is None
    assert not setting.has_credential
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "No client secret is saved" in page
    assert "Disconnect</button>" not in page
    # A sync started by hand now fails saying what is missing.
    run = sync(setting)
    assert run.status == SyncRun.Status.FAILED and "No client secret is saved" in run.error


@pytest.mark.django_db
def test_disconnect_needs_a_post(admin_client, setting):
    assert admin_client.get(reverse("dynamics_crm:disconnect")).status_code == 405
    setting.refresh_from_db()
    assert setting.has_client_secret


@pytest.mark.django_db
def test_secrets_keys_and_caches_are_never_in_the_page(
    admin_client, setting, simulator, connection_form
):
    cert_pem, key, _ = make_certificate()
    certificate = load_certificate(cert_pem, key_pem(key))
    setting.set_certificate(certificate)
    cache = json.dumps({"RefreshToken": {"x": {"secret": "refresh-token-value-123"}}})
    setting.token_cache_encrypted = encryption.encrypt(cache)
    setting.save()
    secrets_ = [
        simulator.info["client_secret"],
        setting.client_secret_encrypted,
        certificate.private_key_pem.splitlines()[1],
        setting.certificate_key_encrypted,
        "refresh-token-value-123",
        setting.token_cache_encrypted,
    ]
    for kind in ("secret", "certificate", "delegated"):
        DynamicsCrmSetting.objects.filter(pk=setting.pk).update(credential_type=kind)
        page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
        for secret in secrets_:
            assert secret not in page, (kind, secret[:12])

    # Nor when a form with errors is shown again.
    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="certificate",
        client_secret="typed-secret-value",
        certificate_passphrase="typed-passphrase",
        certificate=SimpleUploadedFile("c.pem", b"nonsense"),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "typed-secret-value" not in page and "typed-passphrase" not in page


# -- expiry reminders ----------------------------------------------------------------------


@pytest.mark.django_db
def test_expiry_reminders_are_sent_once_at_30_and_7_days(setting, site_admin):
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    setting.sync_frequency = DynamicsCrmSetting.Frequency.OFF
    setting.client_secret_expires_on = (today + dt.timedelta(days=40)).date()
    setting.schedule_next()
    setting.save()
    mail.outbox.clear()

    def tick(days_later):
        return schedule.tick(today + dt.timedelta(days=days_later))["expiry_reminders"]

    assert tick(0) == 0 and not mail.outbox  # 40 days ahead
    assert tick(11) == 1  # 29 days ahead
    assert tick(11) == 0 and tick(12) == 0  # once
    (message,) = mail.outbox
    assert message.to == [site_admin.email]
    assert "client secret" in message.body and "in 29 days" in message.body
    assert setting.client_secret() not in message.body

    assert tick(33) == 1  # 7 days ahead
    assert tick(34) == 0 and tick(39) == 0
    assert len(mail.outbox) == 2 and "in 7 days" in mail.outbox[1].body
    assert tick(41) == 0  # expired: the failing syncs say so
    setting.refresh_from_db()
    assert setting.secret_reminded_days == 7

    # A new secret with a new date: reminded again.
    setting.set_client_secret("a-new-secret-value")
    setting.client_secret_expires_on = (today + dt.timedelta(days=50)).date()
    setting.save()
    assert tick(21) == 1
    assert len(mail.outbox) == 3


@pytest.mark.django_db
def test_a_certificate_expiring_within_a_week_gets_only_the_7_day_reminder(
    admin_client, setting, site_admin
):
    cert_pem, key, cert = make_certificate(days=5)
    setting.credential_type = "certificate"
    setting.forget_credentials(keep={"certificate"})
    setting.set_certificate(load_certificate(cert_pem, key_pem(key)))
    setting.save()
    mail.outbox.clear()

    assert schedule.tick()["expiry_reminders"] == 1
    assert schedule.tick()["expiry_reminders"] == 0
    (message,) = mail.outbox
    assert sha1_hex(cert) in message.body and "certificate" in message.subject
    assert "PRIVATE KEY" not in message.body

    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "The certificate expires in" in page


@pytest.mark.django_db
def test_the_secret_expiry_date_is_saved_from_the_form_and_shown(
    admin_client, setting, simulator, connection_form
):
    expires = timezone.now().date() + dt.timedelta(days=20)
    response = post_connection(
        admin_client,
        simulator,
        connection_form,
        credential_type="secret",
        client_secret_expires_on=expires.isoformat(),
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.client_secret_expires_on == expires and setting.has_client_secret
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "The client secret expires in" in page

    past = post_connection(
        admin_client,
        simulator,
        connection_form,
        client_secret_expires_on=(timezone.now().date() - dt.timedelta(days=1)).isoformat(),
    )
    assert past.status_code == 200 and "That date has passed" in past.content.decode()
