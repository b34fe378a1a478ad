"""Change tracking: Prefer: odata.track-changes, delta links and deleted entities."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

TRACK = "odata.track-changes"


def full_sync(api, prefer=TRACK, select="fullname,isdisabled"):
    resp = api.get(f"/systemusers?$select={select}", headers={"Prefer": prefer})
    rows = []
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["value"]
        if "@odata.nextLink" not in body:
            return rows, body, resp
        resp = api.get(body["@odata.nextLink"], headers={"Prefer": prefer})


def test_initial_sync_returns_delta_link(api, sim):
    rows, last, resp = full_sync(api)
    assert len(rows) == sim.store.count_users()
    assert TRACK in resp.headers.get_list("preference-applied")
    link = last["@odata.deltaLink"]
    assert link.startswith(sim.info["organization_uri"] + "/api/data/v9.2/systemusers?")
    assert "$select=fullname,isdisabled" in link
    raw = re.search(r"\$deltatoken=([^&]+)", link).group(1)
    assert "%21" in raw and "%2f" in raw  # url-encoded like the documented example
    token = unquote(raw)
    assert re.fullmatch(r"\d+!\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", token)
    assert int(token.split("!")[0]) == sim.store.version


def test_paged_initial_sync_with_tracking(api, sim):
    rows, last, _ = full_sync(api, prefer=f"{TRACK},odata.maxpagesize=100")
    assert len({r["systemuserid"] for r in rows}) == sim.store.count_users()
    assert "@odata.deltaLink" in last


def test_no_changes_gives_empty_delta(api):
    _, last, _ = full_sync(api)
    delta = api.get(last["@odata.deltaLink"], headers={"Prefer": TRACK}).json()
    assert delta["value"] == []
    assert delta["@odata.context"].endswith("$metadata#systemusers(fullname,isdisabled)/$delta")
    assert "@odata.deltaLink" in delta


def test_delta_reports_changes_then_deletions(api, sim):
    _, last, _ = full_sync(api)
    users = [u for u in sim.store.users() if not u["applicationid"]]
    changed = users[10]["systemuserid"]
    deleted = users[20]["systemuserid"]
    sim.update_user(changed, firstname="Changed")
    created = sim.create_user(firstname="New", lastname="Person")
    sim.delete_user(deleted)
    gone_again = sim.create_user(firstname="Short", lastname="Lived")
    sim.delete_user(gone_again)

    delta = api.get(last["@odata.deltaLink"], headers={"Prefer": TRACK}).json()
    values = delta["value"]
    upserts = [v for v in values if "reason" not in v]
    removals = [v for v in values if v.get("reason") == "deleted"]
    assert {v["systemuserid"] for v in upserts} == {changed, created}
    assert [v["fullname"] for v in upserts if v["systemuserid"] == changed][0].startswith(
        "Changed "
    )
    assert {v["id"] for v in removals} == {deleted, gone_again}
    assert values.index(removals[0]) > values.index(upserts[-1])  # changes first
    for v in removals:
        assert v["@odata.context"] == (
            f"{sim.info['organization_uri']}/api/data/v9.2/$metadata#systemusers/$deletedEntity"
        )
    # the next delta starts after these changes
    again = api.get(delta["@odata.deltaLink"], headers={"Prefer": TRACK}).json()
    assert again["value"] == []


def test_changes_during_a_paged_initial_sync_are_not_lost(api, sim):
    prefer = f"{TRACK},odata.maxpagesize=100"
    first = api.get("/systemusers?$select=fullname", headers={"Prefer": prefer}).json()
    served = first["value"][0]["systemuserid"]
    sim.update_user(served, firstname="Edited")  # changed after being served
    _, last, _ = (None, None, None)
    resp = api.get(first["@odata.nextLink"], headers={"Prefer": prefer})
    while True:
        body = resp.json()
        if "@odata.nextLink" not in body:
            last = body
            break
        resp = api.get(body["@odata.nextLink"], headers={"Prefer": prefer})
    delta = api.get(last["@odata.deltaLink"], headers={"Prefer": TRACK}).json()
    assert served in {v.get("systemuserid") for v in delta["value"]}


@pytest.mark.parametrize(
    ("param", "value"),
    [("$filter", "isdisabled eq false"), ("$orderby", "fullname"), ("$top", "5")],
)
def test_tracking_refuses_filter_orderby_top(api, param, value):
    resp = api.get("/systemusers", params={param: value}, headers={"Prefer": TRACK})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        f'The "{param}" query parameter isn\'t supported when Change Tracking is enabled.'
    )


def test_expired_delta_token(api, sim):
    _, last, _ = full_sync(api)
    sim.advance_clock(31 * 86400)
    token = sim.issue_token()
    resp = api.get(
        last["@odata.deltaLink"],
        headers={"Prefer": TRACK, "Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 400
    assert "Version stamp associated with the client has expired" in resp.json()["error"]["message"]


def test_large_delta_is_paged(api, sim):
    _, last, _ = full_sync(api)
    ids = [u["systemuserid"] for u in sim.store.users()][:30]
    for uid in ids:
        sim.update_user(uid, jobtitle="Renamed")
    prefer = f"{TRACK},odata.maxpagesize=12"
    resp = api.get(last["@odata.deltaLink"], headers={"Prefer": prefer})
    seen = []
    pages = 0
    while True:
        body = resp.json()
        pages += 1
        seen += [v["systemuserid"] for v in body["value"]]
        if "@odata.nextLink" not in body:
            break
        query = dict(parse_qsl(urlsplit(body["@odata.nextLink"]).query))
        assert "$deltatoken" in query and "$skiptoken" in query
        resp = api.get(body["@odata.nextLink"], headers={"Prefer": prefer})
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert "@odata.deltaLink" in body


def test_a_row_changed_twice_is_reported_once_at_its_latest_version(api, sim):
    """The change log keeps every write; a delta reports each row once, as it is now, in
    the order of its last change, and nothing for a row deleted since."""
    _, last, _ = full_sync(api)
    users = [u["systemuserid"] for u in sim.store.users() if not u["applicationid"]]
    first, second, gone = users[3], users[4], users[5]
    sim.update_user(first, firstname="Once")
    sim.update_user(gone, firstname="Doomed")
    sim.update_user(second, firstname="Only")
    sim.update_user(first, firstname="Twice")
    sim.delete_user(gone)
    delta = api.get(last["@odata.deltaLink"], headers={"Prefer": TRACK}).json()
    changed = [r for r in delta["value"] if "reason" not in r]
    assert [r["systemuserid"] for r in changed] == [second, first]
    assert changed[1]["fullname"].startswith("Twice")
    assert [r["id"] for r in delta["value"] if "reason" in r] == [gone]
    count = api.get(
        "/systemusers/$count?$deltatoken="
        + re.search(r"\$deltatoken=([^&]+)", last["@odata.deltaLink"]).group(1)
    )
    assert count.status_code == 200, count.text
    assert int(count.text.lstrip("\ufeff")) == 3
