"""RetrieveTotalRecordCount: each named table's row count, by its logical name, inline or
through a parameter alias, as Dataverse's Web API reference shows it."""

from __future__ import annotations

import json
from urllib.parse import quote


def test_the_counts_of_the_named_tables_in_their_order(sim, api):
    resp = api.get("/RetrieveTotalRecordCount(EntityNames=['contact','systemuser'])")

    assert resp.status_code == 200
    body = resp.json()
    assert body["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse"
    )
    counts = body["EntityRecordCountCollection"]
    assert counts["Count"] == 2 and counts["IsReadOnly"] is False
    assert counts["Keys"] == ["contact", "systemuser"]
    assert counts["Values"] == [len(sim.store.contacts), len(list(sim.store.users()))]


def test_a_parameter_alias_and_the_count_as_it_is_now(sim, api):
    before = len(list(sim.store.users()))
    sim.store.delete_user(next(iter(sim.store.users()))["systemuserid"])
    alias = quote(json.dumps(["systemuser"]))

    resp = api.get(f"/RetrieveTotalRecordCount(EntityNames=@p1)?@p1={alias}")

    assert resp.json()["EntityRecordCountCollection"]["Values"] == [before - 1]


def test_an_unknown_table_or_a_missing_parameter_is_an_error(api):
    unknown = api.get("/RetrieveTotalRecordCount(EntityNames=['nosuchtable'])")
    assert unknown.status_code == 404 and "nosuchtable" in unknown.json()["error"]["message"]
    assert api.get("/RetrieveTotalRecordCount()").status_code == 400
    assert api.get("/RetrieveTotalRecordCount(EntityNames=systemuser)").status_code == 400
    assert api.post("/RetrieveTotalRecordCount(EntityNames=['systemuser'])").status_code == 405
