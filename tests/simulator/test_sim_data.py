"""The generated organization and the store's Python API."""

from __future__ import annotations

import re

import pytest

from dataverse_sim.data import Store
from dataverse_sim.schema import DAVID_SO_RECORD

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def users():
    return list(Store(users=400, seed=3).users())


def test_same_seed_same_data_different_seed_different_data():
    a = list(Store(users=300, seed=42).users())
    b = list(Store(users=300, seed=42).users())
    c = list(Store(users=300, seed=43).users())
    assert a == b
    assert [u["systemuserid"] for u in a] != [u["systemuserid"] for u in c]


def test_simulator_identity_is_deterministic(sim):
    from dataverse_sim.data import make_tenant

    again = make_tenant(1)
    assert sim.info["tenant_id"] == again.tenant_id
    assert sim.info["client_id"] == again.client_id
    assert GUID.match(sim.info["tenant_id"]) and GUID.match(sim.info["client_id"])
    assert sim.tenant_domain.endswith(".onmicrosoft.com")
    assert len(sim.info["client_secret"]) >= 30


def test_user_count_and_shape(users):
    assert len(users) == 400
    for u in users:
        assert list(u) == list(DAVID_SO_RECORD)
        assert GUID.match(u["systemuserid"])
        assert ISO.match(u["createdon"]) and ISO.match(u["modifiedon"])
        assert u["createdon"] <= u["modifiedon"]
        assert isinstance(u["versionnumber"], int)
        assert u["_businessunitid_value"] and GUID.match(u["_businessunitid_value"])
    versions = [u["versionnumber"] for u in users]
    assert len(set(versions)) == len(versions)


def test_design_note_record_is_included_verbatim(users):
    (david,) = [u for u in users if u["systemuserid"] == DAVID_SO_RECORD["systemuserid"]]
    assert david == DAVID_SO_RECORD


def test_special_users_present(users):
    by_mode = {}
    for u in users:
        by_mode.setdefault(u["accessmode"], []).append(u)
    assert [u["internalemailaddress"] for u in by_mode[3]] == ["crmoln@microsoft.com"]
    assert [u["internalemailaddress"] for u in by_mode[5]] == ["crmoln2@microsoft.com"]
    apps = [u for u in users if u["applicationid"]]
    assert len(apps) >= 5
    assert all(u["fullname"].startswith("# ") for u in apps)
    assert {u["accessmode"] for u in apps} == {0, 4}
    assert any(u["accessmode"] == 4 and not u["applicationid"] for u in users)
    assert sum(u["isdisabled"] for u in users) >= 5
    assert sum(u["internalemailaddress"] is None for u in users) >= 3
    emails = [u["internalemailaddress"].lower() for u in users if u["internalemailaddress"]]
    assert len(emails) - len(set(emails)) == 1  # exactly one shared address


def test_names_and_emails_are_realistic(users):
    names = {u["fullname"] for u in users}
    assert {"Zoë O'Brien", "Łukasz Wójcik"} <= names
    emails = [u["internalemailaddress"] or "" for u in users]
    assert any("+" in e for e in emails)
    assert any("'" in e for e in emails)
    assert any(e != e.lower() for e in emails)
    assert any(not n.isascii() for n in names)
    assert len({u["address1_city"] for u in users}) > 5
    assert any(u["jobtitle"] for u in users) and any(u["employeeid"] for u in users)


def test_store_methods_bump_versions():
    store = Store(users=50, seed=9)
    before = store.version
    uid = store.create_user(firstname="Grace", lastname="Hopper", internalemailaddress="g@x.com")
    created = store.get_user(uid)
    assert created["fullname"] == "Grace Hopper" and created["versionnumber"] == before + 1
    store.update_user(uid, lastname="Murray Hopper")
    updated = store.get_user(uid)
    assert updated["fullname"] == "Grace Murray Hopper"
    assert updated["versionnumber"] == before + 2
    assert updated["yomifullname"] == "Grace Murray Hopper"
    store.disable_user(uid)
    assert store.get_user(uid)["isdisabled"] is True
    store.delete_user(uid)
    assert store.get_user(uid) is None
    assert store.tombstones[-1][2] == uid
    with pytest.raises(KeyError):
        store.update_user(uid, firstname="x")
    with pytest.raises(ValueError):
        store.create_user(nosuchcolumn=1)
    assert sum(1 for _ in store.users()) == 50
