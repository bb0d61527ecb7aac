"""ElevenLabs' error shape, shared by their WebSocket and HTTP routes: ``error`` (their
machine-readable code) and a message; on a WebSocket the socket then closes with 1008."""

from __future__ import annotations

from typing import Final

from session.errors import TimbreError

POLICY_VIOLATION: Final = 1008
"""The close code ElevenLabs uses for every protocol error."""


class ElevenLabsError(TimbreError):
    """A refusal in ElevenLabs' shape: ``error`` is their machine-readable code. Fatal: the socket
    is closed with ``close_code`` after the error object is sent."""

    code = "invalid_input_message"
    http_status = 400
    close_code = POLICY_VIOLATION

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        if error is not None:
            self.code = error


def invalid_message(detail: str) -> ElevenLabsError:
    return ElevenLabsError(
        "Could not parse input message, make sure it is a json and follows the schema outlined "
        f"in protocol: {detail}")
