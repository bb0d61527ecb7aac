"""``timbre admin``: tenants and API keys, written straight to MongoDB.

    timbre admin create-tenant --name acme --tier pro     # prints the tenant id
    timbre admin create-key --tenant acme [--name ci]     # prints the key, once
    timbre admin list-tenants
    timbre admin revoke-key key_...

What is printed on stdout is the one value a script wants (an id, a key, the tenant table); what a
person wants to read goes to stderr. The database is found like ``timbre serve`` finds it:
``MONGO_URL`` (or ``--mongo-url``) when set; otherwise the embedded SecantusDB of ``--data-dir``.
While a ``timbre serve`` runs on that data dir it owns the embedded server and publishes its URL in
``DATA_DIR/mongo-url``; the command uses that server when it answers. Otherwise the command starts
the embedded server itself, does its work and stops it (a few seconds: the server flushes on exit).

A key revoked here stops working on a running server within its key cache TTL (5 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import PyMongoError

from realtime.config import AppConfig, load_config
from session.authn import EVERY_SCOPE, Scope
from session.db import EmbeddedMongo, Stores, open_database
from session.errors import TimbreError
from session.ids import KeyId, TenantId
from session.store.tenants import Tenant
from session.tiers import UnknownTier

MONGO_URL_FILE = "mongo-url"  # written by `timbre serve` while it runs the embedded server
PING_TIMEOUT_MS = 2000


class AdminError(Exception):
    """A refusal the operator should read (exit status 1)."""


def add_parser(subparsers: Any) -> None:
    """Add ``timbre admin`` and its commands to the ``timbre`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (env DATA_DIR, default ./data)")
    common.add_argument("--config", type=Path, default=None,
                        help="TOML configuration file, for custom tiers (env TIMBRE_CONFIG)")
    common.add_argument("--mongo-url", default=None,
                        help="MongoDB to use (env MONGO_URL; default: the data dir's embedded one)")
    admin = subparsers.add_parser("admin", help="manage tenants and API keys")
    commands = admin.add_subparsers(dest="admin_command", required=True)

    tenant = commands.add_parser("create-tenant", parents=[common],
                                 help="create a tenant and print its id")
    tenant.add_argument("--name", required=True, help="unique tenant name")
    tenant.add_argument("--tier", default=None, help="tier name (default: the default tier)")
    tenant.set_defaults(func=_run, action=_create_tenant)

    key = commands.add_parser("create-key", parents=[common],
                              help="create an API key and print it (shown once)")
    key.add_argument("--tenant", required=True, help="tenant name (or id)")
    key.add_argument("--name", default=None, help="a label for the key")
    key.add_argument("--scope", dest="scopes", action="append", default=None,
                     choices=[s.value for s in Scope],
                     help="limit the key to this scope (repeat for several; default: all)")
    key.set_defaults(func=_run, action=_create_key)

    listing = commands.add_parser("list-tenants", parents=[common], help="list every tenant")
    listing.set_defaults(func=_run, action=_list_tenants)

    revoke = commands.add_parser("revoke-key", parents=[common], help="revoke an API key")
    revoke.add_argument("key_id", help="the key's id (key_...), as create-key reported it")
    revoke.set_defaults(func=_run, action=_revoke_key)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(toml_path=args.config,
                             overrides={"data_dir": args.data_dir, "mongo_url": args.mongo_url})
    except (OSError, ValueError) as err:
        print(f"timbre admin: configuration: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_with_stores(args, config))
    except (AdminError, TimbreError) as err:
        print(f"timbre admin: {err}", file=sys.stderr)
        return 1


async def _with_stores(args: argparse.Namespace, config: AppConfig) -> int:
    async with open_stores(config) as stores:
        result: int = await args.action(args, config, stores)
        return result


@asynccontextmanager
async def open_stores(config: AppConfig) -> AsyncIterator[Stores]:
    """The stores on the configured MongoDB, the running server's embedded one, or an embedded
    one started for the duration. Raises AdminError when none can be reached or started."""
    url = config.server.mongo_url or await running_server_url(config.server.data_dir)
    embedded = None
    if url is None:
        embedded = EmbeddedMongo(config.server.data_dir)
        try:
            url = await embedded.start()
        except RuntimeError as err:
            raise AdminError(
                f"{err}. Is another process using {embedded.storage_path} without publishing "
                f"{config.server.data_dir / MONGO_URL_FILE}? Set MONGO_URL to its server.") from None
    db = open_database(url)
    try:
        yield await Stores.open(db)
    finally:
        db.client.close()
        if embedded is not None:
            await embedded.close()


async def running_server_url(data_dir: Path) -> str | None:
    """The URL in ``data_dir/mongo-url`` if a server answers there, else None (no file, or one left
    behind by a server that is gone)."""
    try:
        url = (data_dir / MONGO_URL_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not url:
        return None
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        url, serverSelectionTimeoutMS=PING_TIMEOUT_MS, connectTimeoutMS=PING_TIMEOUT_MS,
        directConnection=True)
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return None
    finally:
        client.close()
    return url


async def _create_tenant(args: argparse.Namespace, config: AppConfig, stores: Stores) -> int:
    tier = args.tier or config.tiers.default
    try:
        config.tiers.get(tier)
    except UnknownTier as err:
        raise AdminError(str(err.args[0])) from None
    tenant = await stores.tenants.create(args.name, tier)
    print(tenant.tenant_id)
    print(f"created tenant {tenant.name!r} ({tenant.tenant_id}, tier {tenant.tier})",
          file=sys.stderr)
    return 0


async def _create_key(args: argparse.Namespace, config: AppConfig, stores: Stores) -> int:
    tenant = await _tenant(stores, args.tenant)
    scopes = sorted(set(args.scopes)) if args.scopes else [EVERY_SCOPE]
    plaintext, record = await stores.api_keys.create(tenant.tenant_id, name=args.name,
                                                     scopes=scopes)
    print(plaintext)
    print(f"API key {record.key_id} for tenant {tenant.name!r} ({tenant.tenant_id}), scopes "
          f"{' '.join(scopes)}. It is shown only now: store it.", file=sys.stderr)
    return 0


async def _list_tenants(args: argparse.Namespace, config: AppConfig, stores: Stores) -> int:
    rows = [("TENANT_ID", "NAME", "TIER", "CREATED")]
    rows += [(t.tenant_id, t.name, t.tier, t.created_at.strftime("%Y-%m-%d %H:%M:%SZ"))
             for t in await stores.tenants.list()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    return 0


async def _revoke_key(args: argparse.Namespace, config: AppConfig, stores: Stores) -> int:
    record = await stores.api_keys.revoke(KeyId(args.key_id))
    if record is None:
        raise AdminError(f"no API key with id {args.key_id!r}")
    assert record.revoked_at is not None
    print(f"revoked {record.key_id} of tenant {record.tenant} at "
          f"{record.revoked_at:%Y-%m-%d %H:%M:%SZ}; a running server refuses it within "
          f"{config.auth.key_cache_ttl_s:g} s", file=sys.stderr)
    return 0


async def _tenant(stores: Stores, name_or_id: str) -> Tenant:
    tenant = await stores.tenants.by_name(name_or_id) or await stores.tenants.get(
        TenantId(name_or_id))
    if tenant is None:
        raise AdminError(f"no tenant named {name_or_id!r} (see: timbre admin list-tenants)")
    return tenant
