"""The Web API client's contract at the HTTP boundary: headers, paging, errors, retries."""

import httpx
import pytest

from learnexa.dynamics_crm.dataverse import DataverseClient, DataverseError, DataverseThrottled

ORG = "https://contoso.crm.dynamics.com"


class FakeTokens:
    def __init__(self):
        self.issued = 0
        self.invalidated = 0

    def token(self):
        self.issued += 1
        return f"token-{self.invalidated}"

    def invalidate(self):
        self.invalidated += 1


def client_for(handler, **options):
    sleeps = []
    client = DataverseClient(
        ORG, FakeTokens(), transport=httpx.MockTransport(handler), sleep=sleeps.append, **options
    )
    return client, sleeps


def dataverse_error(status, message, code="0x80040220", **headers):
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


def test_it_sends_the_documented_headers_and_follows_next_links_unchanged():
    seen = []
    next_link = f"{ORG}/api/data/v9.2/systemusers?$select=firstname&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"

    def handler(request):
        seen.append(request)
        if "$skiptoken" in str(request.url):
            return httpx.Response(200, json={"value": [{"firstname": "B"}]})
        return httpx.Response(
            200, json={"value": [{"firstname": "A"}], "@odata.nextLink": next_link}
        )

    client, _ = client_for(handler, page_size=2)
    pages = list(client.pages(client.collection_url("systemusers", select=["firstname"])))

    assert [p.records for p in pages] == [[{"firstname": "A"}], [{"firstname": "B"}]]
    assert str(seen[1].url) == next_link  # not re-encoded, not re-built
    for request in seen:
        assert request.headers["Accept"] == "application/json"
        assert request.headers["OData-MaxVersion"] == "4.0"
        assert request.headers["OData-Version"] == "4.0"
        assert request.headers["If-None-Match"] == "null"
        assert request.headers["Prefer"] == (
            'odata.maxpagesize=2,odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
        )
        assert request.headers["Authorization"] == "Bearer token-0"
    assert client.requests == 2


def test_whether_a_page_carries_formatted_values_is_asked_before_each_request():
    prefers = []

    def handler(request):
        prefers.append(request.headers["Prefer"])
        page = int(request.url.params.get("page", "1"))
        more = {"@odata.nextLink": f"{ORG}/api/data/v9.2/systemusers?page={page + 1}"}
        return httpx.Response(200, json={"value": [], **(more if page < 3 else {})})

    client, _ = client_for(handler, page_size=2)
    answers = iter([True, False, False])
    url = client.collection_url("systemusers", select=["firstname"])

    assert len(list(client.pages(url, track_changes=True, formatted_values=answers.__next__))) == 3
    annotated = (
        'odata.maxpagesize=2,odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    )
    assert prefers == [
        f"{annotated},odata.track-changes",
        "odata.maxpagesize=2,odata.track-changes",
        "odata.maxpagesize=2,odata.track-changes",
    ]


def test_a_next_link_to_another_host_is_refused_before_the_token_leaves():
    calls = []

    def handler(request):
        calls.append(request.url.host)
        return httpx.Response(
            200, json={"value": [], "@odata.nextLink": "https://evil.example/steal"}
        )

    client, _ = client_for(handler)
    with pytest.raises(DataverseError, match="Refused to send the access token"):
        list(client.pages(f"{ORG}/api/data/v9.2/systemusers"))
    assert calls == ["contoso.crm.dynamics.com"]


def test_429_waits_as_long_as_retry_after_says_then_carries_on():
    answers = iter(
        [
            dataverse_error(
                429,
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                "0x80072322",
                **{"Retry-After": "7"},
            ),
            httpx.Response(200, json={"value": [{"x": 1}]}),
        ]
    )
    client, sleeps = client_for(lambda request: next(answers))
    assert client.get(f"{ORG}/api/data/v9.2/WhoAmI") == {"value": [{"x": 1}]}
    assert sleeps == [7.0]
    assert client.throttle_wait_seconds == 7.0


def test_a_429_storm_beyond_the_waiting_budget_fails_clearly():
    client, sleeps = client_for(
        lambda r: dataverse_error(
            429, "Combined execution time exceeded", "0x80072321", **{"Retry-After": "60"}
        ),
        max_throttle_wait=120,
    )
    with pytest.raises(DataverseThrottled, match="kept throttling") as caught:
        client.get(f"{ORG}/api/data/v9.2/WhoAmI")
    assert sleeps == [60.0, 60.0]
    assert caught.value.code == "0x80072321"


def test_server_errors_and_network_errors_are_retried_with_backoff():
    answers = iter(
        [httpx.Response(503), httpx.ConnectError("reset"), httpx.Response(200, json={"ok": True})]
    )

    def handler(request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, sleeps = client_for(handler)
    assert client.get(f"{ORG}/api/data/v9.2/WhoAmI") == {"ok": True}
    assert len(sleeps) == 2


def test_persistent_server_errors_give_up_after_the_retries():
    client, sleeps = client_for(lambda r: httpx.Response(500), max_retries=2)
    with pytest.raises(DataverseError, match="kept failing with HTTP 500 after 2 retries"):
        client.get(f"{ORG}/api/data/v9.2/WhoAmI")
    assert len(sleeps) == 2


def test_a_401_refreshes_the_token_once():
    tokens_seen = []

    def handler(request):
        tokens_seen.append(request.headers["Authorization"])
        if len(tokens_seen) == 1:
            return httpx.Response(401)
        return httpx.Response(200, json={"ok": True})

    client, _ = client_for(handler)
    assert client.get(f"{ORG}/api/data/v9.2/WhoAmI") == {"ok": True}
    assert tokens_seen == ["Bearer token-0", "Bearer token-1"]


def test_a_second_401_says_to_check_the_application_user():
    client, _ = client_for(lambda r: httpx.Response(401))
    with pytest.raises(DataverseError, match="application user for this client ID"):
        client.get(f"{ORG}/api/data/v9.2/WhoAmI")


@pytest.mark.parametrize(
    "response, message",
    [
        (
            dataverse_error(403, "Principal user is missing prvReadUser privilege"),
            "security role with organization-level Read on Users.*prvReadUser",
        ),
        (
            httpx.Response(404, text="Not Found"),
            "Dynamics has no such address.*Check the organization URI",
        ),
        (
            httpx.Response(200, text="<html>Sign in</html>", headers={"Content-Type": "text/html"}),
            "isn't JSON.*text/html",
        ),
        (
            httpx.Response(
                400,
                json={"error": {"code": "0x0", "message": "Could not find a property named 'x'"}},
            ),
            "HTTP 400.*Could not find a property",
        ),
        (httpx.Response(200, json={"no": "value"}), "without a 'value' list"),
    ],
)
def test_each_failure_says_what_to_fix(response, message):
    client, _ = client_for(lambda r: response)
    with pytest.raises(DataverseError, match=message):
        list(client.pages(f"{ORG}/api/data/v9.2/systemusers"))


def test_a_value_the_fast_json_parser_refuses_does_not_lose_the_page():
    # A lone surrogate and a number beyond 64 bits: valid JSON text that orjson refuses.
    body = b'{"value": [{"firstname": "Ann\\ud800", "employeeid": 123456789012345678901234567890}]}'

    def handler(request):
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    client, _ = client_for(handler)
    (page,) = client.pages(client.collection_url("systemusers", select=["firstname"]))

    assert page.records == [
        {"firstname": "Ann\ud800", "employeeid": 123456789012345678901234567890}
    ]


@pytest.mark.django_db
def test_a_page_read_leaves_no_response_holding_its_bytes(settings, setting):
    """An httpx response and its stream refer to each other, so bytes kept on a response
    wait for the garbage collector, which a sync runs only now and then: the client keeps
    a page's bytes in a variable of its own instead."""
    import gc

    from learnexa.dynamics_crm.mapping import SYSTEMUSER_COLUMNS
    from learnexa.dynamics_crm.sync import open_client

    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 100
    gc.collect()
    gc.disable()
    try:
        with open_client(setting) as client:
            url = client.collection_url("systemusers", select=SYSTEMUSER_COLUMNS)
            records = sum(len(page.records) for page in client.pages(url))
        holding = [
            o
            for o in gc.get_objects()
            if type(o) is httpx.Response
            and getattr(o, "_request", None) is not None
            and o.request.url.path.startswith("/api/data/")
            and getattr(o, "_content", b"")
        ]
    finally:
        gc.enable()
    assert records > 200
    assert holding == []


def test_retry_after_zero_is_waited_at_least_the_backoff_and_a_run_stops_waiting():
    # A server that keeps saying "Retry-After: 0" must not get a busy loop of requests.
    client, sleeps = client_for(
        lambda r: dataverse_error(429, "Too many", "0x80072322", **{"Retry-After": "0"}),
        backoff_seconds=0.5,
    )
    client.retry.max_waits = 20
    with pytest.raises(DataverseThrottled, match="after 20 waits") as caught:
        client.get(f"{ORG}/api/data/v9.2/WhoAmI")
    assert sleeps == [0.5] * 20
    assert client.requests == 21
    assert caught.value.retryable
