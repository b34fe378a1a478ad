"""Server-driven paging: page sizes, Prefer handling, nextLink/paging-cookie shape, and
stability while rows change between pages."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest


def follow(api, url, prefer="odata.maxpagesize=40", params=None):
    """Fetch every page, following @odata.nextLink verbatim; returns (pages, rows)."""
    pages = []
    resp = api.get(url, params=params, headers={"Prefer": prefer})
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(body)
        nxt = body.get("@odata.nextLink")
        if not nxt:
            break
        resp = api.get(nxt, headers={"Prefer": prefer})
    return pages, [r for p in pages for r in p["value"]]


def test_every_row_exactly_once_across_pages(api, sim):
    pages, rows = follow(api, "/systemusers", params={"$select": "fullname"})
    total = sim.store.count_users()
    assert len(pages) == -(-total // 40) >= 6
    ids = [r["systemuserid"] for r in rows]
    assert len(ids) == len(set(ids)) == total
    assert all(len(p["value"]) == 40 for p in pages[:-1])
    assert "@odata.nextLink" not in pages[-1]


def test_filtered_paging(api, sim):
    _, rows = follow(
        api,
        "/systemusers",
        prefer="odata.maxpagesize=7",
        params={"$select": "isdisabled", "$filter": "isdisabled eq false"},
    )
    expected = [u["systemuserid"] for u in sim.store.users() if not u["isdisabled"]]
    assert sorted(r["systemuserid"] for r in rows) == sorted(expected)
    assert all(r["isdisabled"] is False for r in rows)


def test_preference_applied_and_limits(api):
    resp = api.get("/systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=10"})
    assert resp.headers["preference-applied"] == "odata.maxpagesize=10"
    assert len(resp.json()["value"]) == 10
    big = api.get("/systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=9000"})
    assert big.headers["preference-applied"] == "odata.maxpagesize=5000"
    assert "@odata.nextLink" not in big.json()  # 250 users fit in one page of 5000


def test_comma_joined_and_repeated_prefer_headers(api):
    joined = api.get(
        "/systemusers?$select=fullname",
        headers={"Prefer": 'odata.include-annotations="*",odata.maxpagesize=3'},
    )
    assert len(joined.json()["value"]) == 3
    repeated = api.get(
        "/systemusers?$select=fullname",
        headers=[("Prefer", 'odata.include-annotations="*"'), ("Prefer", "odata.maxpagesize=4")],
    )
    assert len(repeated.json()["value"]) == 4
    applied = repeated.headers.get_list("preference-applied")
    assert "odata.maxpagesize=4" in applied


def test_default_page_is_5000(api, sim):
    for i in range(5003 - sim.store.count_users()):
        sim.store.create_user(firstname="Page", lastname=f"Filler {i}")
    first = api.get("/systemusers?$select=fullname").json()
    assert len(first["value"]) == 5000
    second = api.get(first["@odata.nextLink"]).json()
    assert len(second["value"]) == 3
    assert "@odata.nextLink" not in second


def test_next_link_shape(api, sim):
    body = api.get(
        "/systemusers?$select=fullname,internalemailaddress&$filter=isdisabled eq false",
        headers={"Prefer": "odata.maxpagesize=5"},
    ).json()
    link = body["@odata.nextLink"]
    org = sim.info["organization_uri"]
    assert link.startswith(f"{org}/api/data/v9.2/systemusers?")
    query = dict(parse_qsl(urlsplit(link).query))
    assert query["$select"] == "fullname,internalemailaddress"
    assert query["$filter"] == "isdisabled eq false"
    assert (
        "$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e%253csystemuserid%2520last%253d%2522%257b"
        in link
    )  # noqa: E501
    skiptoken = query["$skiptoken"]
    m = re.fullmatch(
        r'<cookie pagenumber="2" pagingcookie="([^"]+)" istracking="False" />', skiptoken
    )
    assert m, skiptoken
    inner = unquote(m.group(1))
    last, first = body["value"][-1]["systemuserid"], body["value"][0]["systemuserid"]
    assert inner == (
        f'<cookie page="1"><systemuserid last="{{{last.upper()}}}" '
        f'first="{{{first.upper()}}}" /></cookie>'
    )
    page2 = api.get(link, headers={"Prefer": "odata.maxpagesize=5"}).json()
    inner2 = unquote(dict(parse_qsl(urlsplit(page2["@odata.nextLink"]).query))["$skiptoken"])
    assert 'pagenumber="3"' in inner2 and 'page="2"' in inner2


def test_decoded_and_reencoded_skiptoken_still_works(api):
    """Clients that parse the nextLink and re-send the parameters (as Airbyte does)."""
    first = api.get("/systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=6"})
    params = dict(parse_qsl(urlsplit(first.json()["@odata.nextLink"]).query))
    again = api.get("/systemusers", params=params, headers={"Prefer": "odata.maxpagesize=6"})
    ids1 = {r["systemuserid"] for r in first.json()["value"]}
    ids2 = {r["systemuserid"] for r in again.json()["value"]}
    assert len(ids2) == 6 and not ids1 & ids2


def test_order_is_sql_server_guid_order(api, sim):
    from dataverse_sim.tables import guid_sort_key

    _, rows = follow(api, "/systemusers", params={"$select": "fullname"})
    keys = [guid_sort_key(r["systemuserid"]) for r in rows]
    assert keys == sorted(keys)
    plain = [r["systemuserid"] for r in rows]
    assert plain != sorted(plain)  # not plain string order


def test_paging_is_stable_when_rows_change_between_pages(api, sim):
    prefer = "odata.maxpagesize=50"
    first = api.get("/systemusers?$select=fullname", headers={"Prefer": prefer}).json()
    seen = [r["systemuserid"] for r in first["value"]]
    # delete an already-served row and a not-yet-served row, add a row before the cursor
    all_ids = [u["systemuserid"] for u in sim.store.users()]
    humans = {u["systemuserid"] for u in sim.store.users() if not u["applicationid"]}
    served = next(uid for uid in seen[3:] if uid in humans)
    sim.store.delete_user(served)
    not_yet = next(uid for uid in all_ids[120:] if uid in humans)
    sim.store.delete_user(not_yet)
    resp = api.get(first["@odata.nextLink"], headers={"Prefer": prefer})
    rest = []
    while True:
        body = resp.json()
        rest += [r["systemuserid"] for r in body["value"]]
        if "@odata.nextLink" not in body:
            break
        resp = api.get(body["@odata.nextLink"], headers={"Prefer": prefer})
    assert not set(rest) & set(seen)
    assert not_yet not in rest
    assert set(seen) | set(rest) == set(all_ids) - {not_yet}
    assert served in seen


def test_orderby_paging_covers_everything(api, sim):
    _, rows = follow(
        api,
        "/systemusers",
        prefer="odata.maxpagesize=17",
        params={"$select": "lastname,createdon", "$orderby": "lastname asc,createdon desc"},
    )
    ids = [r["systemuserid"] for r in rows]
    assert len(ids) == len(set(ids)) == sim.store.count_users()
    last = [(r["lastname"] or "").lower() for r in rows]
    assert last == sorted(last)


@pytest.mark.parametrize(
    "bad", ["garbage", '<cookie pagenumber="2" pagingcookie="%3cx" istracking="False" />']
)  # noqa: E501
def test_invalid_skiptoken(api, bad):
    resp = api.get("/systemusers", params={"$skiptoken": bad})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"]


def test_top_is_ignored_with_maxpagesize(api):
    resp = api.get(
        "/systemusers?$select=fullname&$top=3", headers={"Prefer": "odata.maxpagesize=10"}
    )
    body = resp.json()
    assert len(body["value"]) == 10
    assert "@odata.nextLink" in body


def test_parallel_paging_while_users_change(sim, ssl_context, token):
    import threading

    import httpx

    stable = {u["systemuserid"] for u in sim.store.users()}
    victims = [u["systemuserid"] for u in sim.store.users() if not u["applicationid"]][::25]
    stable -= set(victims)
    results: list[set] = []
    errors: list[BaseException] = []

    def reader():
        try:
            with httpx.Client(
                verify=ssl_context, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                url = sim.info["organization_uri"] + "/api/data/v9.2/systemusers?$select=fullname"
                seen: list[str] = []
                while url:
                    body = client.get(url, headers={"Prefer": "odata.maxpagesize=20"}).json()
                    seen += [r["systemuserid"] for r in body["value"]]
                    url = body.get("@odata.nextLink")
                assert len(seen) == len(set(seen))
                results.append(set(seen))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer():
        for i, uid in enumerate(victims):
            sim.update_user(uid, jobtitle=f"Role {i}")
            sim.create_user(firstname="Parallel", lastname=str(i))

    threads = [threading.Thread(target=reader) for _ in range(6)] + [
        threading.Thread(target=writer)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == 6
    for seen in results:
        assert stable <= seen


def test_conditional_get_returns_304(api):
    uid = "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"
    first = api.get(f"/systemusers({uid})?$select=fullname")
    etag = first.json()["@odata.etag"]
    again = api.get(f"/systemusers({uid})?$select=fullname", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert api.get(f"/systemusers({uid})", headers={"If-None-Match": "null"}).status_code == 200
