"""Shared fixtures: real MongoDB-protocol and Redis servers (see tests/services.py).

The servers start on first use and live for the whole session; each test gets its own database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from session.db import Stores, open_database
from session.store._common import Database
from tests.services import MongoService, RedisService


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoService]:
    service = MongoService(tmp_path_factory.mktemp("secantus"))
    yield service
    service.stop()


@pytest.fixture
async def mongo_db(mongo_server: MongoService) -> AsyncIterator[Database]:
    """An empty database of its own (no indexes yet), dropped afterwards."""
    db = open_database(mongo_server.url, mongo_server.database_name())
    yield db
    await db.client.drop_database(db.name)
    db.client.close()


@pytest.fixture
async def stores(mongo_db: Database) -> Stores:
    """Every store over the test's database, indexes created."""
    return await Stores.open(mongo_db)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    service = RedisService(tmp_path_factory.mktemp("redis"))
    yield service
    service.stop()


@pytest.fixture
async def redis_client(redis_server: RedisService) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on an emptied Redis database."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()
