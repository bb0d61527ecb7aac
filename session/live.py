"""Which live contexts speak with which voice profile, so revoking consent ends them at once."""

from __future__ import annotations

from collections.abc import Callable

from session.ids import TenantId

EndStream = Callable[[str], None]
"""Called with a message when the voice a live context uses is revoked or deleted."""


class LiveVoices:
    """Lives on the event loop; one per process. (Across nodes, each node ends its own contexts
    when it learns of a revocation; the profile cache TTL bounds how long another node may still
    start a new context with it.)"""

    def __init__(self) -> None:
        self._users: dict[tuple[TenantId, str], dict[int, EndStream]] = {}

    def add(self, tenant: TenantId, voice_id: str, end: EndStream) -> Callable[[], None]:
        """Register a live context; returns the function that unregisters it."""
        users = self._users.setdefault((tenant, voice_id), {})
        token = id(end)
        users[token] = end

        def remove() -> None:
            users.pop(token, None)
            if not users:
                self._users.pop((tenant, voice_id), None)

        return remove

    def end_all(self, tenant: TenantId, voice_id: str, message: str) -> int:
        """End every live context using the voice; returns how many there were."""
        users = self._users.pop((tenant, voice_id), {})
        for end in list(users.values()):
            end(message)
        return len(users)

    def count(self, tenant: TenantId, voice_id: str) -> int:
        return len(self._users.get((tenant, voice_id), {}))
