import pytest

from learnexa.dynamics_crm.hosts import (
    HostNotAllowed,
    normalize_authority_host,
    normalize_organization_uri,
    same_origin,
)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://Contoso.CRM4.dynamics.com/", "https://contoso.crm4.dynamics.com"),
        ("https://contoso.crm.dynamics.com:443", "https://contoso.crm.dynamics.com"),
        ("https://gov.crm.microsoftdynamics.us", "https://gov.crm.microsoftdynamics.us"),
    ],
)
def test_microsoft_organization_uris_are_accepted(uri, expected):
    assert normalize_organization_uri(uri) == expected


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://contoso.crm.dynamics.com", "must start with https://"),
        ("https://contoso.crm.dynamics.com.evil.example", "not a Microsoft Dynamics 365 host"),
        ("https://evil-dynamics.com", "not a Microsoft Dynamics 365 host"),
        ("https://10.0.0.5", "not an IP address"),
        ("https://169.254.169.254", "not an IP address"),
        ("https://[::1]", "not an IP address"),
        ("https://user:pw@contoso.crm.dynamics.com", "user name or password"),
        ("https://contoso.crm.dynamics.com/api/data", "without a path"),
        ("https://contoso.crm.dynamics.com:8443", "standard HTTPS port"),
        ("", "Enter the organization URI"),
        ("contoso.crm.dynamics.com", "must start with https://"),
    ],
)
def test_anything_else_is_refused_with_what_to_fix(uri, message):
    with pytest.raises(HostNotAllowed, match=message):
        normalize_organization_uri(uri)


def test_the_authority_defaults_to_microsoft_and_refuses_foreign_hosts():
    assert normalize_authority_host("") == "https://login.microsoftonline.com"
    assert (
        normalize_authority_host("https://login.microsoftonline.us")
        == "https://login.microsoftonline.us"
    )
    with pytest.raises(HostNotAllowed):
        normalize_authority_host("https://login.microsoftonline.com.evil.example")


def test_a_host_the_operator_allowed_may_use_its_port(settings):
    settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = ["127.0.0.1:8443"]
    assert normalize_organization_uri("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    with pytest.raises(HostNotAllowed):
        normalize_organization_uri("https://127.0.0.1:9443")
    with pytest.raises(HostNotAllowed):
        normalize_organization_uri("http://127.0.0.1:8443")


def test_same_origin_compares_scheme_host_and_port():
    origin = "https://contoso.crm.dynamics.com"
    assert same_origin("https://contoso.crm.dynamics.com/api/data/v9.2/x?$skiptoken=1", origin)
    assert not same_origin("https://evil.example/api/data/v9.2/x", origin)
    assert not same_origin("http://contoso.crm.dynamics.com/api", origin)
    assert not same_origin("https://contoso.crm.dynamics.com:444/api", origin)
    assert not same_origin("https://a@contoso.crm.dynamics.com/api", origin)
