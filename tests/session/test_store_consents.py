"""Consent records: tenant-scoped, revocation idempotent, validity over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from session.db import Stores
from session.ids import ConsentId, TenantId
from session.store.consents import ConsentRecord

A, B = TenantId("t_a"), TenantId("t_b")


async def make(stores: Stores, tenant: TenantId = A, **changes: object) -> ConsentRecord:
    fields: dict[str, object] = {
        "owner_name": "Ada Lovelace", "statement": "I agree that my voice may be cloned.",
        "accepted": True, "purpose": "audiobook narration",
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC), "uploaded_by": "key_1"}
    fields.update(changes)
    return await stores.consents.create(tenant, **fields)  # type: ignore[arg-type]


async def test_create_and_read_back(stores: Stores) -> None:
    record = await make(stores)
    assert await stores.consents.get(A, record.consent_id) == record
    assert (record.owner_name, record.accepted, record.revoked_at) == ("Ada Lovelace", True, None)
    assert await stores.consents.get(B, record.consent_id) is None
    assert await stores.consents.get(A, ConsentId("c_nope")) is None


async def test_revoke_is_tenant_scoped_and_idempotent(stores: Stores) -> None:
    record = await make(stores)
    assert await stores.consents.revoke(B, record.consent_id) is None
    revoked = await stores.consents.revoke(A, record.consent_id)
    assert revoked is not None and revoked.revoked_at is not None
    again = await stores.consents.revoke(A, record.consent_id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert not revoked.valid_at(datetime.now(UTC))


async def test_validity_needs_acceptance_and_an_unexpired_record(stores: Stores) -> None:
    now = datetime.now(UTC)
    assert (await make(stores)).valid_at(now)
    assert (await make(stores, expires_at=None)).valid_at(now)
    assert not (await make(stores, accepted=False)).valid_at(now)
    assert not (await make(stores, expires_at=now - timedelta(seconds=1))).valid_at(now)
