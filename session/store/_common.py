"""What every store shares: motor types, UTC timestamps, and guarded status transitions in the database."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase
from pymongo import ReturnDocument

from session.quota_errors import InvalidState

Document = dict[str, Any]
Database = AsyncIOMotorDatabase[Document]
Collection = AsyncIOMotorCollection[Document]

S = TypeVar("S", bound=enum.Enum)


def utcnow() -> datetime:
    """Now in UTC, cut to the millisecond BSON keeps, so a record returned by ``create`` equals the
    one read back later."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """A BSON datetime as an aware UTC datetime, whether or not the client was opened ``tz_aware``."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def check_transition(transitions: Mapping[S, frozenset[S]], what: str, current: S, new: S) -> None:
    """Raise InvalidState (naming the current state) unless ``current -> new`` is allowed."""
    if new not in transitions[current]:
        raise InvalidState(f"{what} is {current.value}; it cannot become {new.value}",
                           current=str(current.value))


async def transition(
    collection: Collection,
    query: Document,
    transitions: Mapping[S, frozenset[S]],
    new: S,
    update: Document,
    what: str,
) -> Document | None:
    """Apply ``update`` to the document matching ``query`` only if its ``status`` may become ``new``.

    The check and the write are one atomic ``find_one_and_update`` (two writers cannot both move the
    same document out of a state). Returns the updated document, None when nothing matches ``query``;
    raises InvalidState naming the current state when the transition is not allowed."""
    sources = [state.value for state, targets in transitions.items() if new in targets]
    document: Document | None = await collection.find_one_and_update(
        {**query, "status": {"$in": sources}}, update, return_document=ReturnDocument.AFTER)
    if document is not None:
        return document
    current = await collection.find_one(query, {"status": 1})
    if current is None:
        return None
    state = type(new)(current["status"])
    check_transition(transitions, what, state, new)
    # Allowed now but not a moment ago: another writer moved it in between. Report what we saw.
    raise InvalidState(f"{what} changed state concurrently (now {state.value})",
                       current=str(state.value))
