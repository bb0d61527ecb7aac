"""Voice parameters that engines load by name on their own thread.

The event loop ``put``s a voice profile's engine-specific parameters (bytes) when a stream or job
resolves the profile; the engine's model thread ``get``s them the first time a request names that
voice and builds its tensors there, so no model state is touched from another thread.
"""

from __future__ import annotations

import threading


class VoiceRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._voices: dict[str, bytes] = {}

    def put(self, name: str, params: bytes) -> None:
        with self._lock:
            self._voices[name] = params

    def get(self, name: str) -> bytes | None:
        with self._lock:
            return self._voices.get(name)

    def discard(self, name: str) -> None:
        with self._lock:
            self._voices.pop(name, None)
