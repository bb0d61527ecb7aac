"""The error tree every client-visible failure comes from.

Each error carries its wire ``code``, the HTTP status for REST answers, the WebSocket close code when
the error ends the connection (``None`` when the session survives it), and whether retrying can help.
Transports turn these into their own wire shapes; clients never see a stack trace. The tenant
layer's refusals (quotas, tiers, lifecycles) are in ``session.quota_errors``; reference-audio
refusals in ``session.reference_audio``; auth refusals beyond ``Unauthorized`` in ``session.authn``.
"""

from __future__ import annotations


class TimbreError(Exception):
    """Base of all client-visible errors."""

    code = "internal_error"
    http_status = 500
    close_code: int | None = 1011
    retryable = False

    def __init__(self, message: str, *, context_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context_id = context_id

    @property
    def fatal(self) -> bool:
        """True when the connection is closed after this error."""
        return self.close_code is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class BadRequest(TimbreError):
    code = "bad_request"
    http_status = 400
    close_code = 4400


class BadJson(TimbreError):
    code = "bad_json"
    http_status = 400
    close_code = None


class UnknownType(TimbreError):
    code = "unknown_type"
    http_status = 400
    close_code = None


class BadMessage(TimbreError):
    code = "bad_message"
    http_status = 400
    close_code = None


class BinaryNotSupported(TimbreError):
    code = "binary_not_supported"
    http_status = 400
    close_code = None


class UnknownVoice(TimbreError):
    code = "unknown_voice"
    http_status = 404
    close_code = None


class BadFormat(TimbreError):
    code = "bad_format"
    http_status = 400
    close_code = None


class BadSampleRate(TimbreError):
    code = "bad_sample_rate"
    http_status = 400
    close_code = None


class ContextClosed(TimbreError):
    code = "context_closed"
    http_status = 409
    close_code = None


class UnknownContext(TimbreError):
    code = "unknown_context"
    http_status = 404
    close_code = None


class TooManyContexts(TimbreError):
    code = "too_many_contexts"
    http_status = 429
    close_code = None
    retryable = True


class TextTooLong(TimbreError):
    code = "text_too_long"
    http_status = 413
    close_code = None


class ServerBusy(TimbreError):
    code = "server_busy"
    http_status = 503
    close_code = None
    retryable = True


class SynthesisFailed(TimbreError):
    code = "synthesis_failed"
    http_status = 422
    close_code = None


class MessageTooLarge(TimbreError):
    code = "message_too_large"
    http_status = 413
    close_code = 1009


class SlowConsumer(TimbreError):
    code = "slow_consumer"
    http_status = 503
    close_code = 4001
    retryable = True


class InactivityTimeout(TimbreError):
    code = "inactivity_timeout"
    http_status = 408
    close_code = 4000
    retryable = True


class BodyTimeout(TimbreError):
    """A request body that stopped arriving (no byte within the idle deadline) or is still not
    complete at its whole-body deadline (``realtime.guards.BodyDeadlines``). Without it a client
    that sends headers and then trickles or stops its body would hold a handler for ever."""

    code = "body_timeout"
    http_status = 408
    close_code = None
    retryable = True


class Unauthorized(TimbreError):
    code = "unauthorized"
    http_status = 401
    close_code = 4401


class OriginNotAllowed(TimbreError):
    """A browser's WebSocket handshake from a page whose origin this server does not allow."""

    code = "origin_not_allowed"
    http_status = 403
    close_code = 4403


class InternalError(TimbreError):
    code = "internal_error"
    http_status = 500
    close_code = 1011


def with_close(error: TimbreError, close_code: int) -> TimbreError:
    """The same error, but ending the connection with ``close_code`` (e.g. a bad query value,
    which is fatal at connect time although the same error in a message is not)."""
    error.close_code = close_code  # instance attribute shadows the class default
    return error
