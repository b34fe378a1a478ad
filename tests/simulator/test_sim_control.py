"""The control API (HTTP) and the request log."""

from __future__ import annotations

import httpx


def test_control_requires_the_token(sim, ssl_context):
    url = sim.info["control_url"] + "/info"
    assert httpx.get(url, verify=ssl_context).status_code == 401
    wrong = httpx.get(url, verify=ssl_context, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    # a Web API token is not a control token
    ok = httpx.get(
        url, verify=ssl_context, headers={"Authorization": f"Bearer {sim.info['control_token']}"}
    )
    assert ok.status_code == 200
    assert ok.json()["organization_uri"] == sim.info["organization_uri"]


def test_control_rejects_web_api_tokens(sim, ssl_context, token):
    resp = httpx.get(
        sim.info["control_url"] + "/info",
        verify=ssl_context,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 401


def test_user_lifecycle_over_http(control, api):
    created = control.post(
        "/users",
        json={
            "firstname": "Ada",
            "lastname": "Lovelace",
            "internalemailaddress": "Ada@Contoso.com",
        },
    )
    assert created.status_code == 201
    uid = created.json()["systemuserid"]
    record = api.get(f"/systemusers({uid})").json()
    assert record["fullname"] == "Ada Lovelace"
    version = record["versionnumber"]

    changed = control.patch(f"/users/{uid}", json={"jobtitle": "Analyst"})
    assert changed.status_code == 200
    record2 = api.get(f"/systemusers({uid})").json()
    assert record2["jobtitle"] == "Analyst"
    assert record2["versionnumber"] > version
    assert record2["@odata.etag"] == f'W/"{record2["versionnumber"]}"'
    assert record2["modifiedon"] >= record["modifiedon"]

    assert control.post(f"/users/{uid}/disable").json()["isdisabled"] is True
    assert api.get(f"/systemusers({uid})?$select=isdisabled").json()["isdisabled"] is True

    assert control.delete(f"/users/{uid}").status_code == 204
    assert api.get(f"/systemusers({uid})").status_code == 404
    assert control.delete(f"/users/{uid}").status_code == 404


def test_bad_control_input(control):
    assert control.post("/users", json={"nosuchcolumn": 1}).status_code == 400
    assert control.post("/faults", json={"kind": "explode"}).status_code == 400
    assert control.put("/throttling", json={"bogus": 1}).status_code == 400
    assert control.get("/nowhere").status_code == 404


def test_throttling_and_faults_over_http(control, api):
    assert control.put("/throttling", json={"requests": 2}).json()["requests"] == 2
    assert [api.get("/WhoAmI").status_code for _ in range(3)] == [200, 200, 429]
    control.put("/throttling", json={"requests": 6000})
    assert (
        control.post("/faults", json={"kind": "status", "status": 503, "count": 1}).status_code
        == 201
    )  # noqa: E501
    assert control.get("/faults").json()["faults"][0]["status"] == 503
    assert api.get("/WhoAmI").status_code == 503
    assert control.get("/faults").json()["faults"] == []


def test_secret_rotation_and_token_expiry_over_http(sim, control, api, new_token):
    old = sim.info["client_secret"]
    new = control.post("/secret/rotate").json()["client_secret"]
    assert new != old
    assert new_token(new)
    assert control.post("/tokens/expire").status_code == 200
    assert api.get("/WhoAmI").status_code == 401


def test_clock_advance(sim, control):
    before = sim.now()
    after = control.post("/clock/advance", json={"seconds": 3600}).json()["now"]
    assert after - before >= 3600


def test_request_log(sim, control, api):
    control.delete("/requests")
    api.get("/systemusers?$select=fullname&$top=2")
    api.get("/systemusers(00000000-0000-0000-0000-000000000000)")
    log = control.get("/requests").json()["requests"]
    assert [(e["method"], e["status"]) for e in log] == [("GET", 200), ("GET", 404)]
    assert log[0]["path"] == "/api/data/v9.2/systemusers?$select=fullname&$top=2"
    assert log[0]["timestamp"].endswith("Z")
    assert sim.request_log()[-1]["status"] == 404


def test_reset(sim, control, api):
    uid = control.post("/users", json={"firstname": "Temp"}).json()["systemuserid"]
    assert control.post("/reset").status_code == 200
    assert api.get(f"/systemusers({uid})").status_code == 404
    assert sim.store.count_users() == 250


def test_control_is_for_loopback_clients_only(sim):
    from email.message import Message
    from types import SimpleNamespace

    headers = Message()
    headers["Authorization"] = f"Bearer {sim.info['control_token']}"
    remote = SimpleNamespace(client_address=("10.1.2.3", 50000), headers=headers, command="GET")
    assert sim._handle_control(remote, "/_control/info", "", b"").status == 403
    local = SimpleNamespace(client_address=("127.0.0.1", 50000), headers=headers, command="GET")
    assert sim._handle_control(local, "/_control/info", "", b"").status == 200
