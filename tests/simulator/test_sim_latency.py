"""The latency model: Web API responses wait per request and per record returned; Entra ID
and the control API never do."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from dataverse_sim.__main__ import main
from dataverse_sim.routing import Latency

NONE = {"per_request_ms": 0.0, "per_row_ms": 0.0}


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def last_webapi_entry(sim) -> dict:
    return [e for e in sim.request_log() if e["kind"] == "webapi"][-1]


def test_set_get_and_clear_over_http(control):
    assert control.get("/latency").json() == NONE
    model = {"per_request_ms": 400, "per_row_ms": 0.2}
    assert control.put("/latency", json=model).json() == model
    assert control.get("/latency").json() == model
    # an omitted field keeps its value
    assert control.patch("/latency", json={"per_row_ms": 0.5}).json() == {
        "per_request_ms": 400,
        "per_row_ms": 0.5,
    }
    assert control.delete("/latency").json() == NONE
    assert control.get("/latency").json() == NONE


def test_reset_clears_it(sim, control):
    control.put("/latency", json={"per_request_ms": 250, "per_row_ms": 1})
    assert control.post("/reset").status_code == 200
    assert control.get("/latency").json() == NONE
    assert sim.latency.as_dict() == NONE


@pytest.mark.parametrize(
    "body",
    [
        {"per_request_ms": -1},
        {"per_row_ms": -0.1},
        {"per_request_ms": "400"},
        {"per_request_ms": True},
        {"per_request_ms": None},
        {"per_request_ms": 600_001},
        {"per_row_ms": 1_001},
        {"per_second_ms": 1},
        {"per_request_ms": 100, "jitter": 5},
    ],
)
def test_validation_errors_are_400(control, body):
    resp = control.put("/latency", json=body)
    assert resp.status_code == 400
    assert "error" in resp.json()
    assert control.get("/latency").json() == NONE  # nothing changed, not even a valid part


def test_not_a_number_is_400(control):
    resp = control.put(
        "/latency", content=b'{"per_request_ms": NaN}', headers={"Content-Type": "text/json"}
    )
    assert resp.status_code == 400
    assert control.put("/latency", content=b"[1, 2]").status_code == 400


def test_web_api_pages_wait_in_proportion_to_their_rows(sim, control, api):
    control.put("/latency", json={"per_request_ms": 0, "per_row_ms": 3})
    one, one_s = timed(lambda: api.get("/systemusers?$select=fullname&$top=1"))
    assert one.status_code == 200 and len(one.json()["value"]) == 1
    entry = last_webapi_entry(sim)
    assert (entry["rows"], entry["latency_ms"]) == (1, 3)

    page, page_s = timed(
        lambda: api.get(
            "/systemusers?$select=fullname", headers={"Prefer": "odata.maxpagesize=100"}
        )
    )
    assert page.status_code == 200 and len(page.json()["value"]) == 100
    entry = last_webapi_entry(sim)
    assert (entry["rows"], entry["latency_ms"]) == (100, 300)
    assert page_s >= 0.3
    assert page_s - one_s >= 0.25

    # a single record is one row; full records (no $select) are counted the same way
    uid = page.json()["value"][0]["systemuserid"]
    assert api.get(f"/systemusers({uid})").status_code == 200
    assert last_webapi_entry(sim)["rows"] == 1
    assert api.get("/systemusers", headers={"Prefer": "odata.maxpagesize=7"}).status_code == 200
    assert last_webapi_entry(sim)["rows"] == 7


def test_every_web_api_response_waits_per_request(sim, control, api):
    control.put("/latency", json={"per_request_ms": 150, "per_row_ms": 100})
    whoami, seconds = timed(lambda: api.get("/WhoAmI"))
    assert whoami.status_code == 200
    assert seconds >= 0.15
    assert last_webapi_entry(sim)["latency_ms"] == 150  # no records in it
    missing, seconds = timed(lambda: api.get("/systemusers(00000000-0000-0000-0000-000000000000)"))
    assert missing.status_code == 404
    assert seconds >= 0.15
    assert last_webapi_entry(sim)["rows"] == 0
    # a collection without etags (EntityDefinitions) is counted all the same
    defs = api.get("/EntityDefinitions?$select=LogicalName")
    assert defs.status_code == 200
    assert last_webapi_entry(sim)["rows"] == len(defs.json()["value"]) > 0


def test_entra_and_control_are_not_delayed(sim, control, new_token):
    control.put("/latency", json={"per_request_ms": 1500, "per_row_ms": 1})
    _, seconds = timed(new_token)
    assert seconds < 1.0
    _, seconds = timed(lambda: control.get("/info"))
    assert seconds < 1.0
    entra = [e for e in sim.request_log() if e["kind"] == "entra"][-1]
    assert "latency_ms" not in entra


def test_waiting_holds_no_lock_other_requests_need(sim, control, api, ssl_context, token):
    control.put("/latency", json={"per_request_ms": 600, "per_row_ms": 0})
    results: list[int] = []

    def read():
        with httpx.Client(
            base_url=api.base_url, headers=dict(api.headers), verify=ssl_context
        ) as client:
            results.append(client.get("/systemusers?$select=fullname&$top=3").status_code)

    threads = [threading.Thread(target=read) for _ in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    # while they wait: the control API and the store answer at once
    _, seconds = timed(lambda: control.post("/users", json={"firstname": "Quick"}))
    assert seconds < 0.4
    for thread in threads:
        thread.join()
    assert results == [200] * 4
    assert time.perf_counter() - started < 4 * 0.6  # in parallel, not one after the other


def test_latency_class_and_start_up_values():
    model = Latency(5, 0.5)
    assert model.set(per_row_ms=2) == {"per_request_ms": 5.0, "per_row_ms": 2.0}
    model.reset()  # back to the start-up model, as reset() of a simulator started with it
    assert model.as_dict() == {"per_request_ms": 5.0, "per_row_ms": 0.5}
    assert model.clear() == NONE
    with pytest.raises(ValueError):
        Latency(-1, 0)


def test_command_line_refuses_bad_values(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--latency-per-request-ms", "-5"])
    assert exc.value.code == 2
    assert "per_request_ms" in capsys.readouterr().err
