"""Tenant store against a real SecantusDB server."""

from __future__ import annotations

import pytest

from session.db import Stores
from session.ids import TenantId
from session.quota_errors import AlreadyExists


async def test_create_then_read_back_by_id_and_name(stores: Stores) -> None:
    tenant = await stores.tenants.create("acme", "pro")
    assert tenant.tenant_id.startswith("t_")
    assert await stores.tenants.get(tenant.tenant_id) == tenant
    assert await stores.tenants.by_name("acme") == tenant
    assert await stores.tenants.get(TenantId("t_nope")) is None
    assert await stores.tenants.by_name("nope") is None


async def test_names_are_unique(stores: Stores) -> None:
    await stores.tenants.create("acme", "free")
    with pytest.raises(AlreadyExists) as caught:
        await stores.tenants.create("acme", "pro")
    assert caught.value.http_status == 409
    assert [t.name for t in await stores.tenants.list()] == ["acme"]


async def test_set_tier_keeps_everything_else(stores: Stores) -> None:
    tenant = await stores.tenants.create("acme", "free")
    upgraded = await stores.tenants.set_tier(tenant.tenant_id, "enterprise")
    assert upgraded is not None
    assert (upgraded.tier, upgraded.name, upgraded.created_at) == ("enterprise", "acme",
                                                                   tenant.created_at)
    assert upgraded.updated_at >= tenant.updated_at
    assert await stores.tenants.set_tier(TenantId("t_nope"), "pro") is None


async def test_ensure_is_idempotent_and_keeps_the_tier(stores: Stores) -> None:
    demo = TenantId("demo")
    first = await stores.tenants.ensure(demo, "demo", "pro")
    await stores.tenants.set_tier(demo, "enterprise")
    again = await stores.tenants.ensure(demo, "demo", "free")
    assert again.tenant_id == first.tenant_id == demo
    assert again.tier == "enterprise"
    with pytest.raises(AlreadyExists):
        await stores.tenants.ensure(TenantId("other"), "demo", "free")
