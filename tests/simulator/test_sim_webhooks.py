"""WebHooks: registration through the Web API, and the calls the simulator makes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from dataverse_sim.layout import ORGANIZATION_ID
from dataverse_sim.webhooks import filter_id, message_id


class Receiver:
    """A plain-HTTP endpoint on loopback that records calls and answers `status`."""

    def __init__(self):
        self.calls: list[dict] = []
        self.statuses: list[int] = []  # answered in turn; then 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                receiver.calls.append(
                    {
                        "path": parts.path,
                        "query": parse_qs(parts.query),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(body),
                        "at": time.monotonic(),
                    }
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, seconds: float = 3.0) -> list[dict]:
        deadline = time.monotonic() + seconds
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.calls

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def endpoint(api, url, authtype=4, authvalue="the-key", **extra):
    resp = api.post(
        "/serviceendpoints",
        json={
            "name": "hook",
            "url": url,
            "contract": 8,
            "authtype": authtype,
            "authvalue": authvalue,
            "messageformat": 2,
            **extra,
        },
        headers={"Prefer": "return=representation"},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["serviceendpointid"]


def step(api, endpoint_id, message, entity="systemuser", **extra):
    resp = api.post(
        "/sdkmessageprocessingsteps",
        json={
            "name": f"{message} of {entity}",
            "stage": 40,
            "mode": 1,
            "rank": 1,
            "supporteddeployment": 0,
            "asyncautodelete": True,
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id(message)})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id(message, entity)})",
            **extra,
        },
    )
    assert resp.status_code == 204, resp.text
    return resp.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def test_serviceendpoints_are_created_listed_and_deleted(api):
    sid = endpoint(api, "https://hooks.example.org/dataverse")
    listed = api.get(
        "/serviceendpoints?$filter=contract eq 8&$select=serviceendpointid,name,authtype,url"
    )
    [row] = listed.json()["value"]
    assert row == {
        "serviceendpointid": sid,
        "name": "hook",
        "authtype": 4,
        "url": "https://hooks.example.org/dataverse",
    }
    full = api.get(f"/serviceendpoints({sid})").json()
    assert "authvalue" not in full and full["isauthvalueset"] is True
    step(api, sid, "Update")
    assert api.delete(f"/serviceendpoints({sid})").status_code == 204
    assert api.get(f"/serviceendpoints({sid})").status_code == 404
    assert api.get("/sdkmessageprocessingsteps").json()["value"] == []  # went with it


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://hooks.example.org:8443/x"},  # only 443 / 80
        {"url": "ftp://hooks.example.org/x"},
        {"authtype": 1},
        {"authvalue": ""},
        {"name": ""},
    ],
)
def test_bad_serviceendpoints_are_refused(api, fields):
    body = {"name": "h", "url": "https://h.example.org/", "contract": 8, "authtype": 4}
    body["authvalue"] = "k"
    resp = api.post("/serviceendpoints", json={**body, **fields})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"]


def test_steps_need_lowercase_binds_and_known_messages(api):
    sid = endpoint(api, "https://hooks.example.org/")
    pascal = api.post(
        "/sdkmessageprocessingsteps",
        json={
            "stage": 40,
            "mode": 1,
            "EventHandler_ServiceEndpoint@odata.bind": f"/serviceendpoints({sid})",
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id('Update')})",
        },
    )
    assert pascal.status_code == 400
    sync_step = step(api, sid, "Create", mode=0)
    listed = api.get(f"/sdkmessageprocessingsteps({sync_step})").json()
    assert (listed["mode"], listed["_eventhandler_value"]) == (0, sid)
    assert api.delete(f"/sdkmessageprocessingsteps({sync_step})").status_code == 204


def test_messages_and_filters_can_be_looked_up(api):
    names = api.get(
        "/sdkmessages?$select=sdkmessageid,name&$filter=name eq 'Create' or name eq 'Update'"
    ).json()["value"]
    assert sorted(m["name"] for m in names) == ["Create", "Update"]
    update = next(m["sdkmessageid"] for m in names if m["name"] == "Update")
    filters = api.get(
        "/sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq "
        f"'contact' and _sdkmessageid_value eq {update}"
    ).json()["value"]
    assert filters == [{"sdkmessagefilterid": filter_id("Update", "contact")}]


def test_registering_without_the_privilege_is_403(api, control):
    denied = control.put("/webhooks/privileges", json={"register": False})
    assert denied.json()["denied"] == [
        "prvCreateSdkMessageProcessingStep",
        "prvCreateServiceEndpoint",
    ]
    resp = api.post(
        "/serviceendpoints",
        json={"name": "h", "url": "https://h.example.org/", "contract": 8, "authtype": 4},
    )
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["code"] == "0x80040220"
    assert "is missing prvCreateServiceEndpoint privilege" in error["message"]
    control.put("/webhooks/privileges", json={"deny": ["prvCreateSdkMessageProcessingStep"]})
    sid = endpoint(api, "https://h.example.org/")
    blocked = api.post(
        "/sdkmessageprocessingsteps",
        json={"eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({sid})"},
    )
    assert blocked.status_code == 403
    assert "prvCreateSdkMessageProcessingStep" in blocked.json()["error"]["message"]


def test_user_changes_are_posted_within_a_second(api, control, receiver, sim):
    sid = endpoint(api, receiver.url, authvalue="s3cret")
    for message in ("Create", "Update", "Delete"):
        step(api, sid, message)
    started = time.monotonic()
    uid = control.post("/users", json={"firstname": "Ada", "lastname": "L"}).json()["systemuserid"]
    [created] = receiver.wait(1)
    assert created["at"] - started < 1.0
    assert created["query"] == {"code": ["s3cret"]}
    assert created["path"] == "/hook/"
    headers, body = created["headers"], created["body"]
    assert headers["x-ms-dynamics-entity-name"] == "systemuser"
    assert headers["x-ms-dynamics-request-name"] == "Create"
    assert headers["x-ms-dynamics-organization"] == sim.info["organization_uri"].split("//")[1]
    assert headers["x-ms-correlation-request-id"] == body["CorrelationId"]
    assert (body["MessageName"], body["PrimaryEntityName"], body["PrimaryEntityId"]) == (
        "Create",
        "systemuser",
        uid,
    )
    assert body["OrganizationId"] == ORGANIZATION_ID and body["Stage"] == 40 and body["Mode"] == 1
    target = body["InputParameters"][0]["value"]
    assert target["__type"].startswith("Entity:") and target["Id"] == uid
    attributes = {a["key"]: a["value"] for a in target["Attributes"]}
    assert attributes["firstname"] == "Ada"
    assert attributes["createdon"].startswith("/Date(")

    control.patch(f"/users/{uid}", json={"lastname": "Lovelace"})
    control.post(f"/users/{uid}/disable")
    control.post(f"/users/{uid}/enable")
    control.delete(f"/users/{uid}")
    calls = receiver.wait(5)
    assert [c["body"]["MessageName"] for c in calls[1:]].count("Update") == 3
    update = next(c for c in calls[1:] if c["body"]["MessageName"] == "Update")
    changed = {a["key"] for a in update["body"]["InputParameters"][0]["value"]["Attributes"]}
    assert changed <= {"lastname", "isdisabled", "modifiedon"}
    delete = next(c for c in calls if c["body"]["MessageName"] == "Delete")
    assert delete["body"]["InputParameters"][0]["value"]["__type"].startswith("EntityReference:")
    deliveries = control.get("/webhooks/deliveries").json()["deliveries"]
    assert [d["statuscode"] for d in deliveries] == [30] * 5


def test_only_matching_steps_are_called(api, control, receiver):
    sid = endpoint(api, receiver.url)
    step(api, sid, "Update", filteringattributes="firstname,isdisabled")
    step(api, sid, "Create", entity="contact")
    uid = control.post("/users", json={"firstname": "A"}).json()["systemuserid"]  # no step
    control.patch(f"/users/{uid}", json={"lastname": "Not filtered"})  # not a filtered column
    control.patch(f"/users/{uid}", json={"firstname": "Filtered"})
    cid = control.post("/contacts", json={"firstname": "C", "lastname": "D"}).json()["contactid"]
    calls = receiver.wait(2)
    time.sleep(0.3)
    assert [(c["body"]["MessageName"], c["body"]["PrimaryEntityName"]) for c in calls] in (
        [("Update", "systemuser"), ("Create", "contact")],
        [("Create", "contact"), ("Update", "systemuser")],
    )
    assert {c["body"]["PrimaryEntityId"] for c in calls} == {uid, cid}


def test_http_header_authentication(api, control, receiver):
    sid = endpoint(
        api,
        receiver.url,
        authtype=5,
        authvalue='<settings><setting name="x-lms-secret" value="S3cr3t" /></settings>',
    )
    step(api, sid, "Create")
    control.post("/users", json={"firstname": "H"})
    [call] = receiver.wait(1)
    assert call["headers"]["x-lms-secret"] == "S3cr3t" and call["query"] == {}


@pytest.mark.parametrize(("status", "attempts"), [(503, 2), (502, 2), (500, 1), (401, 1)])
def test_one_retry_on_502_503_504_only(api, control, receiver, status, attempts):
    control.put("/webhooks/settings", json={"retry_delay_seconds": 0.1})
    receiver.statuses = [status, status]
    sid = endpoint(api, receiver.url)
    step(api, sid, "Create")
    control.post("/users", json={"firstname": "R"})
    receiver.wait(attempts + 1, seconds=1.5)
    assert len(receiver.calls) == attempts
    deliveries = control.get("/webhooks/deliveries").json()["deliveries"]
    assert [d["attempt"] for d in deliveries] == list(range(1, attempts + 1))
    assert deliveries[-1]["statuscode"] == 31 and deliveries[-1]["status"] == status


def test_a_retry_that_succeeds(api, control, receiver):
    control.put("/webhooks/settings", json={"retry_delay_seconds": 0.1})
    receiver.statuses = [503]
    step(api, endpoint(api, receiver.url), "Create")
    control.post("/users", json={"firstname": "R"})
    receiver.wait(2)
    time.sleep(0.1)
    deliveries = control.get("/webhooks/deliveries").json()["deliveries"]
    assert [(d["status"], d["statuscode"]) for d in deliveries] == [(503, 0), (204, 30)]


def test_outgoing_https_trusts_only_the_configured_ca(api, control, sim):
    # The simulator's own HTTPS server as the target: its CA is not trusted by default.
    step(api, endpoint(api, f"{sim.info['organization_uri']}/hook"), "Create")
    control.post("/users", json={"firstname": "T"})
    deadline = time.monotonic() + 3
    while (
        not control.get("/webhooks/deliveries").json()["deliveries"] and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    [untrusted] = control.get("/webhooks/deliveries").json()["deliveries"]
    assert untrusted["status"] is None and "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]
    control.put("/webhooks/settings", json={"ca_bundle": sim.info["ca_bundle"]})
    control.delete("/webhooks/deliveries")
    control.post("/users", json={"firstname": "T2"})
    while (
        not control.get("/webhooks/deliveries").json()["deliveries"]
        and time.monotonic() < deadline + 3
    ):
        time.sleep(0.02)
    [trusted] = control.get("/webhooks/deliveries").json()["deliveries"]
    assert trusted["status"] is not None  # TLS passed; the simulator answers the path itself


def test_plain_http_goes_to_loopback_only(api, control):
    step(api, endpoint(api, "http://hooks.example.org/x"), "Create")
    control.post("/users", json={"firstname": "P"})
    deadline = time.monotonic() + 3
    while (
        not control.get("/webhooks/deliveries").json()["deliveries"] and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    [refused] = control.get("/webhooks/deliveries").json()["deliveries"]
    assert "loopback" in refused["error"] and refused["statuscode"] == 31


def test_reset_forgets_registrations(api, control, sim):
    endpoint(api, "https://hooks.example.org/")
    control.put("/webhooks/privileges", json={"register": False})
    sim.reset()
    listing = control.get("/webhooks").json()
    assert listing["serviceendpoints"] == [] and listing["settings"]["denied"] == []
