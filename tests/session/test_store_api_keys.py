"""API key store: only hashes are stored; keys are found by plaintext, revoked keys are not."""

from __future__ import annotations

import hashlib

import pytest

from session.db import Stores
from session.ids import KeyId, TenantId
from session.quota_errors import AlreadyExists
from session.store._common import Database

A, B = TenantId("t_a"), TenantId("t_b")


async def test_plaintext_is_returned_once_and_never_stored(stores: Stores,
                                                           mongo_db: Database) -> None:
    plaintext, record = await stores.api_keys.create(A, name="ci", scopes=["stream"])
    assert plaintext.startswith("tk_") and len(plaintext) > 40
    assert (record.tenant, record.name, record.scopes, record.active) == (A, "ci", ("stream",),
                                                                          True)
    raw = await mongo_db["api_keys"].find_one({"_id": record.key_id})
    assert raw is not None and plaintext not in str(raw)
    assert raw["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in str(raw)  # only the hash is stored
    assert await stores.api_keys.find(plaintext) == record
    assert await stores.api_keys.find(plaintext + "x") is None


async def test_revoked_keys_are_not_found_but_still_listed(stores: Stores) -> None:
    plaintext, record = await stores.api_keys.create(A)
    revoked = await stores.api_keys.revoke(record.key_id)
    assert revoked is not None and not revoked.active
    assert await stores.api_keys.find(plaintext) is None
    again = await stores.api_keys.revoke(record.key_id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # idempotent
    assert [k.key_id for k in await stores.api_keys.list(A)] == [record.key_id]
    assert await stores.api_keys.revoke(KeyId("key_nope")) is None


async def test_tenants_see_and_revoke_only_their_own_keys(stores: Stores) -> None:
    plaintext, key_a = await stores.api_keys.create(A)
    await stores.api_keys.create(B)
    assert [k.tenant for k in await stores.api_keys.list(B)] == [B]
    assert await stores.api_keys.revoke(key_a.key_id, tenant=B) is None
    assert await stores.api_keys.find(plaintext) == key_a


async def test_ensure_registers_a_known_key_idempotently(stores: Stores) -> None:
    plaintext = "tk_demo-key-from-the-data-dir"
    first = await stores.api_keys.ensure(A, plaintext)
    assert await stores.api_keys.ensure(A, plaintext) == first
    assert await stores.api_keys.find(plaintext) == first
    assert len(await stores.api_keys.list(A)) == 1
    with pytest.raises(AlreadyExists):
        await stores.api_keys.ensure(B, plaintext)
    with pytest.raises(ValueError):
        await stores.api_keys.ensure(A, "not-a-timbre-key")
