"""Refusals of the tenant layer (tiers, quotas, lifecycles), part of the ``session.errors`` tree.

| error              | code                | HTTP | WS close | retry helps | when                                   |
|--------------------|---------------------|------|----------|-------------|----------------------------------------|
| QuotaExceeded      | quota_exceeded      | 402  | 4402     | no          | the month's characters are used up     |
| TooManyStreams     | too_many_streams    | 429  | 4429     | yes         | the tier's concurrent streams are open |
| ProfileLimit       | profile_limit       | 402  | -        | no          | the tier's voice profiles all exist    |
| FormatNotAllowed   | format_not_allowed  | 403  | -        | no          | an output format outside the tier      |
| InvalidState       | invalid_state       | 409  | -        | no          | a lifecycle transition not allowed     |
| AlreadyExists      | already_exists      | 409  | -        | no          | a unique name or key is taken          |

``-`` means the session survives the error (a REST answer or an error message); use
``session.errors.with_close`` where the same refusal must end a connection at connect time.
"""

from __future__ import annotations

from session.errors import TimbreError


class QuotaExceeded(TimbreError):
    """The tenant's characters for this month are used up; more needs a higher tier or next month."""

    code = "quota_exceeded"
    http_status = 402
    close_code = 4402


class TooManyStreams(TimbreError):
    """The tenant already has as many concurrent streams open as its tier allows."""

    code = "too_many_streams"
    http_status = 429
    close_code = 4429
    retryable = True

    @classmethod
    def at_limit(cls, limit: int) -> TooManyStreams:
        return cls(f"your tier allows {limit} concurrent stream{_s(limit)} and all are in use; "
                   "close one and retry")


class ProfileLimit(TimbreError):
    """The tenant already has as many voice profiles as its tier allows."""

    code = "profile_limit"
    http_status = 402
    close_code = None

    @classmethod
    def at_limit(cls, limit: int) -> ProfileLimit:
        return cls(f"your tier allows {limit} voice profile{_s(limit)}; delete one to make room")


class FormatNotAllowed(TimbreError):
    """The requested output format is not part of the tenant's tier."""

    code = "format_not_allowed"
    http_status = 403
    close_code = None


class InvalidState(TimbreError):
    """A lifecycle transition the current state does not allow (e.g. revoked -> ready).

    ``current`` is the state the object is in, also named in the message."""

    code = "invalid_state"
    http_status = 409
    close_code = None

    def __init__(self, message: str, *, current: str, context_id: str | None = None) -> None:
        super().__init__(message, context_id=context_id)
        self.current = current


class AlreadyExists(TimbreError):
    """A unique value (tenant name, API key) is already taken."""

    code = "already_exists"
    http_status = 409
    close_code = None


def _s(count: int) -> str:
    return "" if count == 1 else "s"
