"""Dataverse Web API reads: authentication, $select, $filter, $orderby, $top, $count, by-key
reads, WhoAmI and metadata."""

from __future__ import annotations

import httpx
import pytest

DAVID = "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"


def rows(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return resp.json()["value"]


def emails(resp: httpx.Response) -> set:
    return {r["internalemailaddress"] for r in rows(resp)}


def error_of(resp: httpx.Response, status: int = 400) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()["error"]


# ------------------------------------------------------------------------------ authentication


def test_no_token_is_401_with_bearer_challenge(sim, anon):
    resp = anon.get("/api/data/v9.2/systemusers")
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    info = sim.info
    assert challenge.startswith("Bearer ")
    assert f"authorization_uri={info['authority_host']}/{info['tenant_id']}/oauth2/authorize" in (
        challenge
    )
    assert f"resource_id={info['organization_uri']}" in challenge
    assert "error" in resp.json()


def test_token_for_another_audience_is_401(sim, anon):
    other = sim.issue_token(audience="https://contoso.crm4.dynamics.com")
    resp = anon.get("/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {other}"})
    assert resp.status_code == 401
    assert "www-authenticate" in resp.headers


def test_tampered_and_expired_tokens_are_401(sim, anon, token):
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA"
    assert (
        anon.get("/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )  # noqa: E501
    good = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/data/v9.2/WhoAmI", headers=good).status_code == 200
    sim.advance_clock(6000)  # past any lifetime (60-90 minutes)
    resp = anon.get("/api/data/v9.2/WhoAmI", headers=good)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "0x8005F101"


def test_expire_tokens_invalidates_issued_tokens_only(sim, anon, new_token):
    before = new_token()
    sim.expire_tokens()
    after = new_token()
    assert (
        anon.get("/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {before}"}).status_code
        == 401
    )  # noqa: E501
    assert (
        anon.get("/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {after}"}).status_code
        == 200
    )  # noqa: E501


# ------------------------------------------------------------------------------ basics


def test_service_document_and_headers(api):
    resp = api.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert resp.headers["odata-version"] == "4.0"
    names = {e["name"] for e in resp.json()["value"]}
    assert {"systemusers", "businessunits"} <= names


def test_whoami_returns_the_application_user(sim, api):
    body = api.get("/WhoAmI").json()
    assert body["UserId"] == sim.application_user_id
    assert body["OrganizationId"] == "29f9e343-0e12-4d21-a7ec-455afe88b257"
    assert body["BusinessUnitId"] == "85bf39cf-2bd9-e611-8119-c4346bdc3cc1"
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    app_user = api.get(f"/systemusers({body['UserId']})").json()
    assert app_user["applicationid"] == sim.client_id
    assert app_user["fullname"].startswith("# ")


def test_entity_definitions_lookup(api):
    resp = api.get(
        "/EntityDefinitions",
        params={
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled",
            "$filter": "LogicalName eq 'systemuser'",
        },
    )
    (entity,) = rows(resp)
    assert entity["EntitySetName"] == "systemusers"
    assert entity["PrimaryIdAttribute"] == "systemuserid"
    assert entity["ChangeTrackingEnabled"] is True
    assert "MetadataId" in entity and "SchemaName" not in entity
    assert resp.json()["@odata.context"].endswith(
        "$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute,"
        "ChangeTrackingEnabled)"
    )
    single = api.get("/EntityDefinitions(LogicalName='systemuser')?$select=ChangeTrackingEnabled")
    assert single.json()["ChangeTrackingEnabled"] is True


def test_v82_endpoint_serves_the_design_note_query(sim, api):
    url = sim.info["organization_uri"] + "/api/data/v8.2/systemusers"
    resp = api.get(
        url, params={"$filter": "contains(internalemailaddress,'davids@crmdemo.dynamics.com')"}
    )  # noqa: E501
    (record,) = rows(resp)
    assert record["systemuserid"] == DAVID
    assert record["@odata.etag"] == 'W/"987803"'
    assert resp.json()["@odata.context"].startswith(
        sim.info["organization_uri"] + "/api/data/v8.2/"
    )  # noqa: E501


# ------------------------------------------------------------------------------ by key


def test_read_by_key_and_404(api):
    resp = api.get(f"/systemusers({DAVID})", params={"$select": "fullname,isdisabled"})
    body = resp.json()
    assert body == {
        "@odata.context": body["@odata.context"],
        "@odata.etag": 'W/"987803"',
        "systemuserid": DAVID,
        "fullname": "David So (Sample Data)",
        "isdisabled": True,
    }
    assert body["@odata.context"].endswith("$metadata#systemusers(fullname,isdisabled)/$entity")
    missing = "00000000-1111-2222-3333-444444444444"
    err = error_of(api.get(f"/systemusers({missing})"), 404)
    assert err["code"] == "0x80040217"
    assert err["message"] == f"systemuser With Id = {missing} Does Not Exist"


def test_full_record_has_design_note_shape(api):
    from dataverse_sim.schema import DAVID_SO_RECORD

    record = api.get(f"/systemusers({DAVID})").json()
    assert {k: v for k, v in record.items() if not k.startswith("@")} == DAVID_SO_RECORD
    other = rows(api.get("/systemusers", params={"$top": "5"}))[0]
    assert list(k for k in other if not k.startswith("@")) == list(DAVID_SO_RECORD)


# ------------------------------------------------------------------------------ $select


def test_select_always_includes_primary_key(api):
    resp = api.get("/systemusers", params={"$select": "fullname,_businessunitid_value"})
    body = resp.json()
    assert body["@odata.context"].endswith("$metadata#systemusers(fullname,_businessunitid_value)")
    for row in body["value"]:
        assert set(row) == {"@odata.etag", "systemuserid", "fullname", "_businessunitid_value"}
        assert row["@odata.etag"].startswith('W/"')


def test_unknown_select_property(api):
    err = error_of(api.get("/systemusers", params={"$select": "fullname,nosuchcolumn"}))
    assert err["code"] == "0x80060888"
    assert err["message"] == (
        "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.systemuser'."
    )


def test_unknown_filter_property(api):
    err = error_of(api.get("/systemusers", params={"$filter": "emailaddress eq 'x'"}))
    assert "Could not find a property named 'emailaddress'" in err["message"]


# ------------------------------------------------------------------------------ $filter


def test_filter_eq_is_case_insensitive(api):
    found = emails(
        api.get(
            "/systemusers", params={"$filter": "internalemailaddress eq 'JOHN_DOE@CONTOSO.COM'"}
        )
    )  # noqa: E501
    assert found == {"john_doe@contoso.com"}


def test_contains_underscore_is_a_wildcard(api):
    found = emails(
        api.get("/systemusers", params={"$filter": "contains(internalemailaddress,'john_doe')"})
    )  # noqa: E501
    assert found == {"john_doe@contoso.com", "johnXdoe@contoso.com"}
    bracketed = emails(
        api.get("/systemusers", params={"$filter": "contains(internalemailaddress,'john[_]doe')"})
    )  # noqa: E501
    assert bracketed == {"john_doe@contoso.com"}


def test_percent_in_value_is_a_wildcard(api):
    found = emails(
        api.get("/systemusers", params={"$filter": "startswith(internalemailaddress,'100%club')"})
    )  # noqa: E501
    assert found == {"100%club@contoso.com"}
    anything = rows(api.get("/systemusers", params={"$filter": "startswith(fullname,'Zo%Brien')"}))
    assert [r["fullname"] for r in anything] == ["Zoë O'Brien"]


def test_doubled_quotes_and_non_ascii(api):
    resp = api.get(
        "/systemusers", params={"$filter": "lastname eq 'O''Brien' and firstname eq 'zoë'"}
    )  # noqa: E501
    (row,) = rows(resp)
    assert row["internalemailaddress"] == "Zoe.O'Brien+lms@Contoso.com"


def test_unterminated_literal_message(api):
    err = error_of(api.get("/systemusers", params={"$filter": "lastname eq 'O'Bryan'"}))
    assert err["message"] == (
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
    )


@pytest.mark.parametrize(
    "expr",
    ["fullname eq", "(fullname eq 'a'", "fullname eq 'a' and", "fullname EQ 'a'", "contains(x)"],
)
def test_syntax_errors_are_400(api, expr):
    err = error_of(api.get("/systemusers", params={"$filter": expr}))
    assert err["code"] == "0x80060888"
    assert err["message"]


def test_and_or_not_and_null(api):
    everyone = rows(
        api.get("/systemusers", params={"$select": "isdisabled,internalemailaddress,applicationid"})
    )  # noqa: E501
    enabled_humans = {
        r["systemuserid"]
        for r in everyone
        if not r["isdisabled"] and r["applicationid"] is None and r["internalemailaddress"]
    }
    resp = api.get(
        "/systemusers",
        params={
            "$select": "fullname",
            "$filter": "isdisabled eq false and applicationid eq null and not "
            "(internalemailaddress eq null)",
        },
    )
    assert {r["systemuserid"] for r in rows(resp)} == enabled_humans
    no_email = rows(api.get("/systemusers", params={"$filter": "internalemailaddress eq null"}))
    assert no_email and all(r["internalemailaddress"] is None for r in no_email)
    support = emails(
        api.get("/systemusers", params={"$filter": "accessmode eq 3 or accessmode eq 5"})
    )  # noqa: E501
    assert support == {"crmoln@microsoft.com", "crmoln2@microsoft.com"}


def test_guid_literal_unquoted(api):
    (row,) = rows(api.get("/systemusers", params={"$filter": f"systemuserid eq {DAVID.upper()}"}))
    assert row["systemuserid"] == DAVID
    bu = rows(
        api.get(
            "/systemusers",
            params={"$filter": "_businessunitid_value eq 85bf39cf-2bd9-e611-8119-c4346bdc3cc1"},
        )
    )  # noqa: E501
    assert bu and all(
        r["_businessunitid_value"] == "85bf39cf-2bd9-e611-8119-c4346bdc3cc1" for r in bu
    )  # noqa: E501


def test_in_function(api):
    flt = (
        "Microsoft.Dynamics.CRM.In(PropertyName='internalemailaddress',"
        'PropertyValues=["john_doe@contoso.com","CRMOLN@microsoft.com","nobody@x.org"])'
    )
    assert emails(api.get("/systemusers", params={"$filter": flt})) == {
        "john_doe@contoso.com",
        "crmoln@microsoft.com",
    }
    aliased = api.get(
        "/systemusers",
        params={
            "$filter": "Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)",
            "@p1": "'lastname'",
            "@p2": '["O\'Brien","Wójcik"]',
        },
    )
    assert {r["lastname"] for r in rows(aliased)} == {"O'Brien", "Wójcik"}


def test_shared_email_has_two_people(api):
    found = rows(
        api.get(
            "/systemusers", params={"$filter": "internalemailaddress eq 'sam.taylor@contoso.com'"}
        )
    )  # noqa: E501
    assert sorted(r["firstname"] for r in found) == ["Sam", "Samantha"]


def test_dates_unquoted(api):
    old = rows(
        api.get(
            "/systemusers", params={"$filter": "modifiedon lt 2018-01-01", "$select": "modifiedon"}
        )
    )  # noqa: E501
    assert old and all(r["modifiedon"] < "2018-01-01" for r in old)
    assert DAVID in {r["systemuserid"] for r in old}
    newer = rows(
        api.get(
            "/systemusers",
            params={"$filter": "modifiedon ge 2025-01-01T00:00:00Z", "$select": "modifiedon"},
        )
    )  # noqa: E501
    assert all(r["modifiedon"] >= "2025-01-01T00:00:00Z" for r in newer)


def test_incompatible_types(api):
    err = error_of(api.get("/systemusers", params={"$filter": "accessmode eq 'x'"}))
    assert "incompatible types" in err["message"]


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize("option", ["$skip", "$search", "$format"])
def test_unsupported_options_refused(api, option):
    err = error_of(api.get("/systemusers", params={option: "1"}))
    assert "not supported" in err["message"] and option in err["message"]


def test_option_names_are_case_sensitive(api):
    err = error_of(api.get("/systemusers", params={"$SELECT": "fullname"}))
    assert "$SELECT" in err["message"]


def test_percent_encoded_option_names_and_plus_spaces(api, sim):
    url = (
        sim.info["organization_uri"]
        + "/api/data/v9.2/systemusers?%24select=fullname&%24filter=lastname+eq+%27Wójcik%27"
    )
    found = rows(api.get(url))
    assert "Łukasz Wójcik" in {r["fullname"] for r in found}
    assert all(r["fullname"].endswith(" Wójcik") for r in found)
    assert all(set(r) == {"@odata.etag", "systemuserid", "fullname"} for r in found)


def test_orderby_and_top(api):
    resp = api.get(
        "/systemusers", params={"$select": "fullname", "$orderby": "fullname desc", "$top": "7"}
    )  # noqa: E501
    names = [r["fullname"] for r in rows(resp)]
    assert len(names) == 7
    assert names == sorted(names, key=str.lower, reverse=True)
    assert "@odata.nextLink" not in resp.json()


def test_count(api, sim):
    body = api.get(
        "/systemusers",
        params={"$count": "true", "$filter": "isdisabled eq true", "$select": "fullname"},
    ).json()  # noqa: E501
    assert body["@odata.count"] == len(body["value"])
    assert list(body)[:3] == ["@odata.context", "@odata.count", "value"]
    total = api.get("/systemusers/$count")
    assert total.status_code == 200
    assert total.headers["content-type"].startswith("text/plain")
    assert int(total.text) == sim.store.count_users()


def test_count_is_capped_at_5000(api, sim):
    for i in range(5001 - sim.store.count_users()):
        sim.store.create_user(firstname="Bulk", lastname=f"User {i}")
    body = api.get("/systemusers", params={"$count": "true", "$select": "fullname"}).json()
    assert sim.store.count_users() == 5001
    assert body["@odata.count"] == 5000
    assert api.get("/systemusers/$count").text == "5000"


# ------------------------------------------------------------------------------ annotations


def test_formatted_values_and_lookup_annotations(api):
    resp = api.get(
        f"/systemusers({DAVID})?$select=accessmode,isdisabled,createdon,_businessunitid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = resp.json()
    fv = "@OData.Community.Display.V1.FormattedValue"
    assert body["accessmode" + fv] == "Read-Write"
    assert body["isdisabled" + fv] == "Disabled"
    assert body["createdon" + fv] == "1/13/2017 1:52 AM"
    assert body["_businessunitid_value" + fv] == "Contoso"
    assert body["_businessunitid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "businessunit"
    keys = list(body)
    assert keys.index("isdisabled" + fv) == keys.index("isdisabled") - 1
    plain = api.get(f"/systemusers({DAVID})?$select=accessmode").json()
    assert "accessmode" + fv not in plain


def test_total_record_count_annotation(api):
    body = api.get(
        "/systemusers?$select=fullname&$count=true",
        headers={
            "Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount,'
            'Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded",odata.maxpagesize=5'
        },
    ).json()
    assert body["@Microsoft.Dynamics.CRM.totalrecordcount"] == 250
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False
    assert len(body["value"]) == 5


# ------------------------------------------------------------------------------ caller


def test_disabled_or_missing_application_user_is_403(sim, api):
    sim.disable_user(sim.application_user_id)
    err = error_of(api.get("/WhoAmI"), 403)
    assert err["code"] == "0x80040225" and "is disabled" in err["message"]
    sim.delete_user(sim.application_user_id)
    err = error_of(api.get("/systemusers?$top=1"), 403)
    assert err["message"] == "The user is not a member of the organization."


def test_application_user_cannot_be_updated(sim, api):
    resp = api.patch(f"/systemusers({sim.application_user_id})", json={"firstname": "x"})
    assert error_of(resp)["code"] == "0x80041d48"


def test_patch_with_etag(api):
    uid = rows(
        api.get(
            "/systemusers", params={"$filter": "internalemailaddress eq 'john_doe@contoso.com'"}
        )
    )[0]["systemuserid"]  # noqa: E501
    current = api.get(f"/systemusers({uid})?$select=jobtitle").json()
    stale = 'W/"1"'
    assert (
        api.patch(
            f"/systemusers({uid})", json={"jobtitle": "A"}, headers={"If-Match": stale}
        ).status_code
        == 412
    )  # noqa: E501
    ok = api.patch(
        f"/systemusers({uid})",
        json={"jobtitle": "Trainer"},
        headers={"If-Match": current["@odata.etag"], "Prefer": "return=representation"},
    )
    assert ok.status_code == 200 and ok.json()["jobtitle"] == "Trainer"
    assert ok.json()["versionnumber"] > int(current["@odata.etag"][3:-1])
    assert api.patch(f"/systemusers({uid})", json={"fullname": "x"}).status_code == 400


def test_null_columns_follow_sql_three_valued_logic(api, sim):
    everyone = rows(api.get("/systemusers", params={"$select": "internalemailaddress"}))
    with_email = {r["systemuserid"] for r in everyone if r["internalemailaddress"] is not None}
    without = {r["systemuserid"] for r in everyone} - with_email
    assert without
    ne = rows(api.get("/systemusers", params={"$filter": "internalemailaddress ne 'x@y.z'"}))
    assert {r["systemuserid"] for r in ne} == with_email
    negated = rows(
        api.get("/systemusers", params={"$filter": "not contains(internalemailaddress,'@')"})
    )
    assert negated == []
    either = rows(
        api.get(
            "/systemusers",
            params={"$filter": "internalemailaddress ne 'x@y.z' or internalemailaddress eq null"},
        )
    )
    assert len(either) == len(everyone)


def test_contacts_and_businessunits(api, sim):
    contacts = api.get("/contacts?$select=fullname,_ownerid_value&$filter=statecode eq 0").json()
    assert contacts["value"] and all(
        set(r) == {"@odata.etag", "contactid", "fullname", "_ownerid_value"}
        for r in contacts["value"]
    )  # noqa: E501
    bus = rows(api.get("/businessunits?$select=name&$orderby=name"))
    assert [b["name"] for b in bus][:2] == ["Contoso", "Customer Service"]
    resp = api.get("/EntityDefinitions?$select=EntitySetName&$filter=ChangeTrackingEnabled eq true")
    assert {r["EntitySetName"] for r in rows(resp)} == {"systemusers", "businessunits", "contacts"}
    assert api.post("/contacts", json={"firstname": "x"}).status_code == 405


def test_malformed_requests_never_cause_server_errors(api):
    import random
    from urllib.parse import quote

    rng = random.Random(3)
    options = [
        "$select",
        "$filter",
        "$orderby",
        "$top",
        "$count",
        "$skiptoken",
        "$deltatoken",
        "@p1",
    ]
    values = [
        "fullname",
        "fullname,nope",
        "",
        "fullname desc",
        "fullname sideways",
        "-1",
        "abc",
        "true",
        "maybe",
        '<cookie pagenumber="2" pagingcookie="%253c" istracking="False" />',
        "1!01/01/2020 00:00:00",
        "zz!",
        "contains(fullname,'a'",
        "'",
        "%",
        "😀",
        "((((",
        "not",
        "Microsoft.Dynamics.CRM.In(PropertyName='fullname',PropertyValues=[1,)",
    ]
    paths = [
        "systemusers",
        "systemusers/$count",
        f"systemusers({DAVID})",
        "systemusers(nope)",
        "EntityDefinitions",
        "EntityDefinitions(LogicalName='x')",
        "WhoAmI",
        "nothing",
    ]
    statuses = set()
    for _ in range(150):
        query = "&".join(
            f"{quote(rng.choice(options))}={quote(rng.choice(values))}"
            for _ in range(rng.randint(1, 3))
        )
        prefer = rng.choice(["odata.track-changes", "odata.maxpagesize=abc", "odata.maxpagesize=0"])
        resp = api.get(f"/{rng.choice(paths)}?{query}", headers={"Prefer": prefer})
        statuses.add(resp.status_code)
        assert resp.status_code < 500, (resp.request.url, resp.text)
        if resp.status_code >= 400:
            assert resp.json()["error"]["message"]
    assert {200, 400, 404} <= statuses
