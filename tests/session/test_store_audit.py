"""The audit log: append-only entries per tenant, newest first."""

from __future__ import annotations

from session.db import Stores
from session.ids import TenantId
from session.store.audit import AuditAction

A, B = TenantId("t_a"), TenantId("t_b")


async def test_entries_list_newest_first_per_subject_and_tenant(stores: Stores) -> None:
    await stores.audit.record(A, AuditAction.VOICE_CREATE, "v_1", "key_1", {"engine": "kokoro"})
    await stores.audit.record(A, AuditAction.VOICE_USE, "v_2", "key_1")
    last = await stores.audit.record(A, AuditAction.VOICE_REVOKE, "v_1", "system")
    await stores.audit.record(B, AuditAction.VOICE_DELETE, "v_9", "key_9")

    history = await stores.audit.list(A, subject="v_1")
    assert [e.action for e in history] == [AuditAction.VOICE_REVOKE, AuditAction.VOICE_CREATE]
    assert history[0] == last
    assert dict(history[1].details) == {"engine": "kokoro"}
    assert len(await stores.audit.list(A)) == 3
    assert [e.subject for e in await stores.audit.list(B)] == ["v_9"]
    assert await stores.audit.list(B, subject="v_1") == []
