"""Requests copied from Microsoft's Dataverse Web API documentation (MicrosoftDocs/powerapps-docs,
published under https://learn.microsoft.com/power-apps/developer/data-platform/), sent with
the simulator's organization URI in place of ``[Organization URI]``, and checked against the
documented responses.

The documentation's examples use ``accounts`` and ``contacts``; the simulator serves
``contacts`` (read-only) and ``systemusers``, so account examples are sent to those sets with
the columns renamed (``name`` -> ``fullname``, ``accountid`` -> ``contactid``). Behaviour the
other simulator tests already cover (``$skip`` refused, unknown properties, 429s, the 5000
``@odata.count`` cap, the systemuser nextLink shape, ``In`` with inline values) is not repeated.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx
import pytest

DOC = "powerapps-docs/developer/data-platform"
HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


@pytest.fixture
def send(sim, ssl_context, token):
    """Send a documented request: ``[Organization URI]`` is replaced, line breaks inside the
    documented URL are dropped, and the URL is sent as written (httpx percent-encodes only
    what must be encoded)."""
    org = sim.info["organization_uri"]

    with httpx.Client(verify=ssl_context) as client:

        def do(method: str, url: str, headers=(), body: bytes | None = None) -> httpx.Response:
            url = "".join(line.strip() for line in url.strip().splitlines())
            url = url.replace("[Organization URI]", org)
            sent = [("Authorization", f"Bearer {token}")]
            sent += list(headers.items()) if isinstance(headers, dict) else list(headers)
            return client.request(method, url, headers=sent, content=body)

        yield do


def odata_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert resp.headers["odata-version"] == "4.0"
    (error,) = resp.json().values()
    assert set(error) == {"code", "message"}
    return error


def skiptoken_cookie(next_link: str) -> str:
    return unquote(re.search(r"\$skiptoken=([^&]+)", next_link).group(1))


# ------------------------------------------------------------------------------ paging


def test_page_results_first_and_next_page_of_contacts(sim, send):
    """DOC webapi/query/page-results.md: `GET [Organization URI]/api/data/v9.2/contacts?
    $select=fullname` with `Prefer: odata.maxpagesize=2`, then the `@odata.nextLink`."""
    org = sim.info["organization_uri"]
    prefer = {**HEADERS, "Prefer": "odata.maxpagesize=2"}
    first = send("GET", "[Organization URI]/api/data/v9.2/contacts?$select=fullname", prefer)
    assert first.status_code == 200
    assert first.headers["odata-version"] == "4.0"
    assert first.headers["preference-applied"] == "odata.maxpagesize=2"
    body = first.json()
    assert list(body) == ["@odata.context", "value", "@odata.nextLink"]
    assert body["@odata.context"] == f"{org}/api/data/v9.2/$metadata#contacts(fullname)"
    assert len(body["value"]) == 2
    for row in body["value"]:
        # the documented key order: etag, the selected columns, then the primary key
        assert list(row) == ["@odata.etag", "fullname", "contactid"]
        assert re.fullmatch(r'W/"\d+"', row["@odata.etag"])
    link = body["@odata.nextLink"]
    first_id, last_id = (body["value"][i]["contactid"].upper() for i in (0, -1))
    assert link == (
        f"{org}/api/data/v9.2/contacts?$select=fullname&$skiptoken=%3Ccookie%20pagenumber="
        "%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e%253ccontactid"
        f"%2520last%253d%2522%257b{last_id}%257d%2522%2520first%253d%2522%257b{first_id}"
        "%257d%2522%2520%252f%253e%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E"
    )

    second = send("GET", link.replace(org, "[Organization URI]"), prefer)
    assert second.headers["preference-applied"] == "odata.maxpagesize=2"
    page2 = second.json()
    assert page2["@odata.context"] == body["@odata.context"]
    assert not {r["contactid"] for r in page2["value"]} & {r["contactid"] for r in body["value"]}
    cookie = skiptoken_cookie(page2["@odata.nextLink"])
    assert cookie.startswith('<cookie pagenumber="3" pagingcookie="%3ccookie%20page%3d%222%22%3e')
    assert cookie.endswith('istracking="False" />')


# ------------------------------------------------------------------------------ counting


def test_count_rows_with_count_true(sim, send):
    """DOC webapi/query/count-rows.md: `GET [Organization URI]/api/data/v9.2/accounts?
    $select=accountid&$count=true` (sent to contacts): `@odata.count` before `value`."""
    resp = send(
        "GET", "[Organization URI]/api/data/v9.2/contacts?$select=contactid&$count=true", HEADERS
    )
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["@odata.context", "@odata.count", "value"]
    org = sim.info["organization_uri"]
    assert body["@odata.context"] == f"{org}/api/data/v9.2/$metadata#contacts(contactid)"
    assert body["@odata.count"] == len(sim.store.contacts) == len(body["value"])
    assert all(list(row) == ["@odata.etag", "contactid"] for row in body["value"])


def test_count_with_page_size_and_crm_annotations(sim, send):
    """DOC webapi/query/count-rows.md: `$filter=contains(name,'sample')&$count=true` with two
    `Prefer` headers (`odata.maxpagesize=3`, `odata.include-annotations="Microsoft.Dynamics.CRM.*"`):
    the count covers every match, only three rows come back, and both preferences are
    echoed in separate `Preference-Applied` headers."""
    resp = send(
        "GET",
        """[Organization URI]/api/data/v9.2/contacts?$select=fullname
        &$filter=contains(fullname,'an')
        &$count=true""",
        [
            *HEADERS.items(),
            ("Prefer", "odata.maxpagesize=3"),
            ("Prefer", 'odata.include-annotations="Microsoft.Dynamics.CRM.*"'),
        ],
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert resp.headers.get_list("preference-applied") == [
        "odata.maxpagesize=3",
        'odata.include-annotations="Microsoft.Dynamics.CRM.*"',
    ]
    body = resp.json()
    matches = [c for c in sim.store.contacts.rows.values() if "an" in c[2].lower()]
    assert len(matches) > 3
    assert list(body)[:5] == [
        "@odata.context",
        "@odata.count",
        "@Microsoft.Dynamics.CRM.totalrecordcount",
        "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded",
        "value",
    ]
    assert body["@odata.count"] == body["@Microsoft.Dynamics.CRM.totalrecordcount"] == len(matches)
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False
    assert len(body["value"]) == 3
    assert "$filter=contains(fullname,'an')&$count=true&$skiptoken=" in body["@odata.nextLink"]


def test_total_record_count_beyond_5000_and_without_count(sim, send):
    """DOC webapi/query/count-rows.md: with more than 5,000 rows, `@odata.count` and
    `@Microsoft.Dynamics.CRM.totalrecordcount` are 5000 and `...limitexceeded` is true;
    without `$count=true` the total record count is -1."""
    for i in range(5001 - sim.store.count_users()):
        sim.store.create_user(firstname="Count", lastname=f"Filler {i}")
    prefer = {
        **HEADERS,
        "Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount,'
        'Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded",odata.maxpagesize=1',
    }
    body = send(
        "GET", "[Organization URI]/api/data/v9.2/systemusers?$select=fullname&$count=true", prefer
    ).json()
    assert body["@odata.count"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcount"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True
    plain = send("GET", "[Organization URI]/api/data/v9.2/systemusers?$select=fullname", prefer)
    assert plain.json()["@Microsoft.Dynamics.CRM.totalrecordcount"] == -1
    assert "@odata.count" not in plain.json()


def test_count_segment_is_plain_text(sim, send):
    """DOC webapi/query/count-rows.md: `GET [Organization URI]/api/data/v9.2/accounts/$count`
    (sent to contacts) returns `Content-Type: text/plain` and a bare number."""
    resp = send("GET", "[Organization URI]/api/data/v9.2/contacts/$count", HEADERS)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain"
    assert resp.headers["odata-version"] == "4.0"
    assert resp.text == str(len(sim.store.contacts))


# ------------------------------------------------------------------------------ change tracking


def test_change_tracking_is_advertised(sim, send):
    """DOC use-change-tracking-synchronize-data-external-systems.md: the three documented
    `EntityDefinitions` queries and `$metadata?annotations=true` with the
    `Org.OData.Capabilities.V1.ChangeTracking` annotation."""
    enabled = send(
        "GET",
        "[Organization URI]/api/data/v9.2/EntityDefinitions?$select=SchemaName&$filter=ChangeTrackingEnabled eq true",
    )
    assert "SystemUser" in {e["SchemaName"] for e in enabled.json()["value"]}
    system = send(
        "GET",
        "[Organization URI]/api/data/v9.2/EntityDefinitions?$filter=ChangeTrackingEnabled eq true and IsCustomEntity eq false&$select=LogicalName",
    )
    assert "systemuser" in {e["LogicalName"] for e in system.json()["value"]}
    ineligible = send(
        "GET",
        "[Organization URI]/api/data/v9.2/EntityDefinitions?$select=SchemaName,ChangeTrackingEnabled&$filter=ChangeTrackingEnabled eq false and CanChangeTrackingBeEnabled/Value eq false",
    )
    assert ineligible.status_code == 200 and ineligible.json()["value"] == []

    metadata = send("GET", "[Organization URI]/api/data/v9.2/$metadata?annotations=true")
    assert metadata.status_code == 200
    entity_set = re.search(r'<EntitySet Name="systemusers".*?</EntitySet>', metadata.text)
    assert entity_set, metadata.text[:300]
    assert (
        '<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
        '<PropertyValue Property="Supported" Bool="true" /></Record></Annotation>'
    ) in entity_set.group()
    plain = send("GET", "[Organization URI]/api/data/v9.2/$metadata")
    assert "Org.OData.Capabilities.V1.ChangeTracking" not in plain.text


def test_retrieve_changes_then_delta(sim, send):
    """DOC use-change-tracking-synchronize-data-external-systems.md: `GET [Organization URI]/
    api/data/v9.0/accounts?$select=name,accountnumber,telephone1,fax HTTP/1.1` with
    `Prefer: odata.track-changes` (sent to systemusers), then the `@odata.deltaLink` without
    a `Prefer` header: the changed row, then the `$deletedEntity` row, and a new delta link;
    `/$count?$deltatoken=...` counts the changes."""
    org = sim.info["organization_uri"]
    select = "fullname,internalemailaddress,mobilephone,jobtitle"
    initial = send(
        "GET",
        f"[Organization URI]/api/data/v9.0/systemusers?$select={select}",
        {
            "Prefer": "odata.track-changes",
            "OData-Version": "4.0",
            "Content-Type": "application/json",
        },
    )
    assert initial.status_code == 200
    assert initial.headers["preference-applied"] == "odata.track-changes"
    body = initial.json()
    assert body["@odata.context"] == f"{org}/api/data/v9.0/$metadata#systemusers({select})"
    delta_link = body["@odata.deltaLink"]
    assert re.fullmatch(
        re.escape(f"{org}/api/data/v9.0/systemusers?$select={select}&$deltatoken=")
        + r"\d+%21\d\d%2f\d\d%2f\d{4}%20\d\d%3a\d\d%3a\d\d",
        delta_link,
    )

    people = [u for u in sim.store.users() if u["applicationid"] is None]
    changed, deleted = people[3]["systemuserid"], people[4]["systemuserid"]
    sim.update_user(changed, mobilephone="555000")
    sim.delete_user(deleted)

    token_query = delta_link.split("?", 1)[1].split("&")[-1]
    count = send(
        "GET",
        f"[Organization URI]/api/data/v9.0/systemusers/$count?{token_query}",
        {"OData-Version": "4.0", "Content-Type": "application/json"},
    )
    assert count.status_code == 200 and count.headers["content-type"] == "text/plain"
    assert count.text == "2"

    delta = send(
        "GET",
        delta_link.replace(org, "[Organization URI]"),
        {"OData-Version": "4.0", "Content-Type": "application/json"},
    )
    assert delta.status_code == 200
    assert delta.headers["odata-version"] == "4.0"
    assert "preference-applied" not in delta.headers  # nothing was asked for
    body = delta.json()
    assert list(body) == ["@odata.context", "value", "@odata.deltaLink"]
    assert body["@odata.context"] == f"{org}/api/data/v9.0/$metadata#systemusers({select})/$delta"
    upsert, removal = body["value"]
    assert list(upsert) == ["@odata.etag", *select.split(","), "systemuserid"]
    assert upsert["systemuserid"] == changed and upsert["mobilephone"] == "555000"
    assert removal == {
        "@odata.context": f"{org}/api/data/v9.0/$metadata#systemusers/$deletedEntity",
        "id": deleted,
        "reason": "deleted",
    }
    assert body["@odata.deltaLink"] != delta_link
    assert body["@odata.deltaLink"].startswith(f"{org}/api/data/v9.0/systemusers?$select={select}&")


def test_expand_is_refused_with_change_tracking(send):
    """DOC use-change-tracking-synchronize-data-external-systems.md: `$expand` (like `$filter`,
    `$orderby` and `$top`, tested elsewhere) gets `The "$expand" query parameter isn't
    supported when Change Tracking is enabled.`"""
    resp = send(
        "GET",
        "[Organization URI]/api/data/v9.2/systemusers?$select=fullname&$expand=businessunitid($select=name)",
        {"Prefer": "odata.track-changes"},
    )
    error = odata_error(resp, 400)
    assert error["message"] == (
        'The "$expand" query parameter isn\'t supported when Change Tracking is enabled.'
    )


# ------------------------------------------------------------------------------ $filter


def test_column_comparison(sim, send):
    """DOC webapi/query/filter-rows.md: `GET [Organization URI]/api/data/v9.2/contacts?
    $select=fullname&$filter=firstname eq lastname` compares two columns of the same row
    (sent to systemusers, whose rows can be written)."""
    same = sim.create_user(firstname="Morgan", lastname="Morgan")
    resp = send(
        "GET",
        "[Organization URI]/api/data/v9.2/systemusers?$select=fullname&$filter=firstname eq lastname",
    )
    assert [r["systemuserid"] for r in resp.json()["value"]] == [same]
    contacts = send(
        "GET",
        "[Organization URI]/api/data/v9.2/contacts?$select=fullname&$filter=firstname eq lastname",
    )
    assert contacts.status_code == 200
    assert all(c[3] != c[4] for c in sim.store.contacts.rows.values())
    assert contacts.json()["value"] == []


@pytest.mark.parametrize(
    ("documented", "sent", "expected"),
    [
        (
            "contains(name,'(sample)') or contains(name,'test')",
            "contains(fullname,'(sample)') or contains(fullname,'test')",
            lambda n: "(sample)" in n or "test" in n,
        ),
        (
            "not contains(name,'sample')",
            "not contains(fullname,'sample')",
            lambda n: "sample" not in n,
        ),
        (
            "(contains(name,'sample') or contains(name,'test')) and revenue gt 5000",
            "(contains(fullname,'sample') or contains(fullname,'test')) and accessmode lt 3",
            None,
        ),
        ("endswith(name,'Inc.')", "endswith(fullname,'Inc.')", lambda n: n.endswith("inc.")),
        ("startswith(name,'a')", "startswith(fullname,'a')", lambda n: n.startswith("a")),
    ],
)
def test_logical_operators_and_string_functions(sim, send, documented, sent, expected):
    """DOC webapi/query/filter-rows.md (Logical operators, Grouping operators, Use OData query
    functions): the documented `$filter` expressions, with `name` -> `fullname`, and
    `revenue gt 5000` -> `accessmode lt 3`. String comparisons are case-insensitive."""
    sim.create_user(firstname="Sample", lastname="Tester (sample)")
    sim.create_user(firstname="Contoso", lastname="Inc.")
    resp = send(
        "GET",
        f"[Organization URI]/api/data/v9.2/systemusers?$select=fullname,accessmode&$filter={sent}",
    )
    assert resp.status_code == 200, (documented, resp.text)
    got = {r["systemuserid"] for r in resp.json()["value"]}
    users = sim.store.users()
    if expected is None:
        want = {
            u["systemuserid"]
            for u in users
            if u["accessmode"] < 3
            and ("sample" in u["fullname"].lower() or "test" in u["fullname"].lower())
        }
    else:
        want = {u["systemuserid"] for u in users if expected(u["fullname"].lower())}
    assert want and got == want


def test_url_encoded_plus_in_a_filter_value(sim, send):
    """DOC webapi/query/filter-rows.md (URL encode special characters): `contains(name,'+123')`
    must be sent as `contains(name,'%2B123')` to match values containing `+123`."""
    plus = sim.create_user(firstname="Plus", lastname="Dialler", mobilephone="+123 555 0100")
    resp = send(
        "GET",
        "[Organization URI]/api/data/v9.2/systemusers?$select=mobilephone&$filter=contains(mobilephone,'%2B123')",
    )
    assert [r["systemuserid"] for r in resp.json()["value"]] == [plus]
    unencoded = send(
        "GET",
        "[Organization URI]/api/data/v9.2/systemusers?$select=mobilephone&$filter=contains(mobilephone,'+123')",
    )
    assert plus not in {r["systemuserid"] for r in unencoded.json()["value"]}  # '+' is a space


def test_in_function_with_parameter_aliases_and_apostrophes(sim, send):
    """DOC webapi/query/filter-rows.md (Manage single quotes): `Microsoft.Dynamics.CRM.In(
    PropertyName=@p1,PropertyValues=@p2)&@p1='lastname'&@p2=["OBrian","OBryan","O'Brian",
    "O'Bryan"]` on contacts (and on systemusers, where such people exist)."""
    documented = """[Organization URI]/api/data/v9.2/contacts?$select=fullname
        &$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)
        &@p1='lastname'
        &@p2=["OBrian","OBryan","O'Brian","O'Bryan"]"""
    resp = send("GET", documented, HEADERS)
    assert resp.status_code == 200, resp.text
    wanted = {"obrian", "obryan", "o'brian", "o'bryan"}
    expected = {c[0] for c in sim.store.contacts.rows.values() if c[4].lower() in wanted}
    assert {r["contactid"] for r in resp.json()["value"]} == expected

    ids = [sim.create_user(firstname="Pat", lastname=n) for n in ("O'Bryan", "OBrian", "O'Brien")]
    users = send("GET", documented.replace("/contacts?", "/systemusers?"), HEADERS)
    assert {r["systemuserid"] for r in users.json()["value"]} == set(ids[:2])


def test_in_function_with_single_quoted_array_values(send):
    """DOC webapi/query/filter-rows.md (Manage single quotes): without double quotes around
    values containing an apostrophe, the error is `Invalid JSON. A comma character ',' was
    expected in scope 'Array'. ...`"""
    resp = send(
        "GET",
        """[Organization URI]/api/data/v9.2/contacts?$select=fullname
        &$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)
        &@p1='lastname'
        &@p2=['OBrian','OBryan','O'Brian','O'Bryan']""",
        HEADERS,
    )
    error = odata_error(resp, 400)
    assert error["message"] == (
        "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements "
        "in an array and properties of an object must be separated by commas."
    )


def test_doubled_quote_and_unterminated_literal_on_contacts(sim, send):
    """DOC webapi/query/filter-rows.md (Manage single quotes): `lastname eq 'O''Bryan'`
    works; `lastname eq 'O'Bryan'` gives `There is an unterminated literal at position 21 in
    'lastname eq 'O'Bryan''.`"""
    ok = send(
        "GET",
        """[Organization URI]/api/data/v9.2/contacts?$select=fullname
        &$filter=lastname eq 'O''Bryan'""",
    )
    assert ok.status_code == 200
    assert ok.json()["value"] == []  # the sample contacts have no O'Bryan
    oneill = send(
        "GET",
        "[Organization URI]/api/data/v9.2/contacts?$select=lastname&$filter=lastname eq 'O''Neill'",
    )
    assert oneill.json()["value"] and {r["lastname"] for r in oneill.json()["value"]} == {"O'Neill"}
    bad = send(
        "GET",
        """[Organization URI]/api/data/v9.2/contacts?$select=fullname
        &$filter=lastname eq 'O'Bryan'""",
    )
    error = odata_error(bad, 400)
    assert error["code"] == "0x80060888"
    assert error["message"] == (
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
    )


# ------------------------------------------------------------------------------ conditional operations


def test_conditional_retrieval(sim, send):
    """DOC webapi/perform-conditional-operations-using-web-api.md (Conditional retrievals):
    `If-None-Match: W/"<version>"` gives `304 Not Modified` with `Content-Type` and
    `OData-Version`; with `Prefer: odata.include-annotations` it never does."""
    uid = next(u for u in sim.store.users() if u["applicationid"] is None)["systemuserid"]
    url = f"[Organization URI]/api/data/v9.0/systemusers({uid})?$select=fullname,jobtitle,isdisabled,createdon"
    etag = send("GET", url, HEADERS).json()["@odata.etag"]
    unchanged = send("GET", url, {**HEADERS, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert unchanged.headers["odata-version"] == "4.0"
    annotated = send(
        "GET",
        url,
        {**HEADERS, "If-None-Match": etag, "Prefer": 'odata.include-annotations="*"'},
    )
    assert annotated.status_code == 200
    assert "isdisabled@OData.Community.Display.V1.FormattedValue" in annotated.json()


def test_if_match_star_prevents_create_in_upsert(send):
    """DOC webapi/perform-conditional-operations-using-web-api.md (Prevent create in upsert):
    `PATCH [Organization URI]/api/data/v9.0/accounts(00000000-0000-0000-0000-000000000001)`
    with `If-Match: *` for a missing record is `404` `... With Id = ... Does Not Exist`."""
    resp = send(
        "PATCH",
        "[Organization URI]/api/data/v9.0/systemusers(00000000-0000-0000-0000-000000000001)",
        {
            "Content-Type": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-Match": "*",
        },
        b'{"jobtitle": "Updated Sample Title ", "address1_city": "Redmond"}',
    )
    error = odata_error(resp, 404)
    assert error["message"] == (
        "systemuser With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist"
    )


def test_if_none_match_star_prevents_update_in_upsert(sim, send):
    """DOC webapi/perform-conditional-operations-using-web-api.md (Prevent update in upsert):
    `If-None-Match: *` on an existing record is `412` `A record with matching key values
    already exists.` and changes nothing."""
    user = next(u for u in sim.store.users() if u["applicationid"] is None)
    resp = send(
        "PATCH",
        f"[Organization URI]/api/data/v9.0/systemusers({user['systemuserid']})",
        {
            "Content-Type": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "*",
        },
        b'{"jobtitle": "Updated Sample Title "}',
    )
    error = odata_error(resp, 412)
    assert error["message"] == "A record with matching key values already exists."
    assert sim.get_user(user["systemuserid"])["jobtitle"] == user["jobtitle"]


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
def test_optimistic_concurrency_on_delete_and_update(sim, send, method):
    """DOC webapi/perform-conditional-operations-using-web-api.md (Apply optimistic concurrency
    on delete / on update): `If-Match: W/"470867"` that no longer matches is `412` `The
    version of the existing record doesn't match the RowVersion property provided.`; the
    current ETag succeeds with `204`."""
    user = next(u for u in sim.store.users() if u["applicationid"] is None)
    url = f"[Organization URI]/api/data/v9.0/systemusers({user['systemuserid']})"
    body = b'{"jobtitle":"Updated Account Name"}' if method == "PATCH" else None
    stale = send(method, url, {"If-Match": 'W/"470867"', **HEADERS}, body)
    error = odata_error(stale, 412)
    assert error["message"] == (
        "The version of the existing record doesn't match the RowVersion property provided."
    )
    assert sim.get_user(user["systemuserid"]) == user  # neither deleted nor changed
    current = f'W/"{user["versionnumber"]}"'
    ok = send(method, url, {"If-Match": current, **HEADERS}, body)
    assert ok.status_code == 204
    after = sim.get_user(user["systemuserid"])
    if method == "DELETE":
        assert after is None
    else:
        assert after["jobtitle"] == "Updated Account Name"


# ------------------------------------------------------------------------------ service protection


def test_429_retry_after_is_whole_seconds(sim, send):
    """DOC api-limits.md (Retry operations): a 429 "will include a Retry-After with number of
    seconds"."""
    sim.set_limits(requests=1, window_seconds=300)
    send("GET", "[Organization URI]/api/data/v9.2/WhoAmI", HEADERS)
    resp = send("GET", "[Organization URI]/api/data/v9.2/WhoAmI", HEADERS)
    error = odata_error(resp, 429)
    assert error["code"] == "0x80072322"
    assert error["message"] == (
        "Number of requests exceeded the limit of 1 over time window of 300 seconds."
    )
    assert re.fullmatch(r"[1-9]\d*", resp.headers["retry-after"])
    assert int(resp.headers["retry-after"]) <= 300


def test_entity_attributes_list_the_tables_columns(api):
    """EntityDefinitions(LogicalName='systemuser')/Attributes, as Airbyte's connector and
    schema discovery read it (reference: query-metadata-web-api.md)."""
    response = api.get(
        "/EntityDefinitions(LogicalName='systemuser')/Attributes?$select=LogicalName,AttributeType"
    )
    assert response.status_code == 200
    attributes = {a["LogicalName"]: a["AttributeType"] for a in response.json()["value"]}
    assert attributes["systemuserid"] == "Uniqueidentifier"
    assert attributes["internalemailaddress"] == "String"
    assert attributes["isdisabled"] == "Boolean"
    assert attributes["businessunitid"] == "Lookup"
    assert set(response.json()["value"][0]) == {"LogicalName", "AttributeType", "MetadataId"}


def test_a_missing_read_privilege_answers_403_like_dataverse(sim, api):
    """403 PrivilegeDenied (0x80040220) when the security role lacks Read on a table
    (reference: Microsoft's troubleshooting of missing privileges)."""
    sim.set_read_privilege("systemuser", False)
    try:
        response = api.get("/systemusers?$select=fullname")
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "0x80040220"
        assert (
            "is missing prvReadUser privilege" in error["message"] and "OTC=8" in error["message"]
        )
        assert api.get("/contacts?$select=fullname").status_code == 200
    finally:
        sim.set_read_privilege("systemuser", True)
    assert api.get("/systemusers?$select=fullname").status_code == 200
