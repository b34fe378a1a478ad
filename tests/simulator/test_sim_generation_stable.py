"""The generated organization must not drift: the same seed and size give the same rows, in
the same order, with the same values (a refactoring of the generator must keep them).

The digests were computed from the generator before it was split into smaller functions;
a deliberate change to the generated data updates them."""

from __future__ import annotations

import hashlib
import json

import pytest

from dataverse_sim.data import generate_contacts, generate_rows, make_tenant

# (seed, users) -> SHA-256 of the canonical JSON of generate_rows(seed, users, tenant)
ROWS = {
    (1, 250): "05911cd4802d7e52783b8029fbc28a1633c6f210da2da2b7be4159d17d137627",
    (7, 40): "f3e290b13a0094766bbebf9fc7ddb126a67a470b8eb4e766f87b657d35fad574",
    (42, 3000): "786777144fdc62e1d59cbb56c5d271f922523b3e4aa58c2d2135fb1ff823acb2",
}
# (seed, users) -> SHA-256 of the contacts generated for that organization, as Store does
CONTACTS = {
    (1, 250): "cf447f2e5cfa2875b08d47258156e6201f53b405b3f8b6c5e3fde98727bc6aac",
    (42, 3000): "86de13c020ffb7d3198438eb8b98fffc9980ba7bcd5973b7bfc918d8f70dded4",
}


def _digest(value) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("seed", "users"), sorted(ROWS))
def test_generated_rows_are_stable(seed, users):
    bus, rows, version = generate_rows(seed, users, make_tenant(seed))
    assert all(type(r) is tuple for r in bus + rows)
    assert _digest([bus, rows, version]) == ROWS[(seed, users)]


@pytest.mark.parametrize(("seed", "users"), sorted(CONTACTS))
def test_generated_contacts_are_stable(seed, users):
    _bus, rows, version = generate_rows(seed, users, make_tenant(seed))
    owners = [r[0] for r in rows[:50]]
    contacts = generate_contacts(seed, max(10, users // 5), owners, first_version=version + 1)
    assert all(type(r) is tuple for r in contacts)
    assert _digest(contacts) == CONTACTS[(seed, users)]
