"""The voice upload form of ``POST /v1/voices``: a multipart body read with byte limits as it
arrives (413 ``file_too_large`` without reading the rest) and within the body deadlines (408
``body_timeout`` when it stalls; ``realtime.guards.BodyReadClock``), then turned into a
``NewVoice``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from realtime.guards import BodyReadClock
from session.errors import BadRequest
from session.reference_audio import FileTooLarge
from session.voice_service import (
    MAX_REFERENCE_FILES,
    ConsentForm,
    ConsentRequired,
    NewVoice,
    ReferenceUpload,
)

READ_CHUNK_BYTES = 64 * 1024
MAX_TEXT_FIELD_BYTES = 16 * 1024
FORM_OVERHEAD_BYTES = 256 * 1024
"""Room for the text fields and multipart framing besides the audio."""

TEXT_FIELDS = frozenset({"name", "transcript", "consent_owner_name", "consent_statement",
                         "consent_accepted", "consent_purpose", "consent_expires_at"})
TRUE_VALUES = frozenset({"true", "yes", "on", "1"})
FALSE_VALUES = frozenset({"false", "no", "off", "0", ""})


@dataclass
class VoiceFormParts:
    """What the multipart body held: text fields (each name once, except ``transcript``) and the
    ``file`` parts in order."""

    fields: dict[str, str] = field(default_factory=dict)
    transcripts: list[str] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)

    def add_text(self, name: str, value: str) -> None:
        if name not in TEXT_FIELDS:
            known = ", ".join(sorted(TEXT_FIELDS | {"file"}))
            raise BadRequest(f"unknown form field {name!r}; known: {known}")
        if name == "transcript":
            if len(self.transcripts) == MAX_REFERENCE_FILES:
                raise BadRequest(f"at most {MAX_REFERENCE_FILES} transcripts")
            self.transcripts.append(value)
        elif name in self.fields:
            raise BadRequest(f"form field {name!r} was sent twice")
        else:
            self.fields[name] = value

    def to_new_voice(self) -> NewVoice:
        """The form as a ``NewVoice``; the i-th ``transcript`` belongs to the i-th ``file``.
        Raises BadRequest or ConsentRequired for values that cannot be read."""
        if len(self.transcripts) > len(self.files):
            raise BadRequest("more 'transcript' fields than 'file' parts; the i-th transcript "
                             "belongs to the i-th file")
        uploads = tuple(
            ReferenceUpload(name, data, self.transcripts[i] if i < len(self.transcripts) else None)
            for i, (name, data) in enumerate(self.files))
        consent = ConsentForm(
            owner_name=self.fields.get("consent_owner_name", ""),
            statement=self.fields.get("consent_statement", ""),
            accepted=parse_flag(self.fields.get("consent_accepted", ""), "consent_accepted"),
            purpose=self.fields.get("consent_purpose", ""),
            expires_at=parse_expiry(self.fields.get("consent_expires_at")))
        return NewVoice(self.fields.get("name", ""), uploads, consent)


def parse_flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise BadRequest(f"{name!r} must be true or false, not {value!r}")


def parse_expiry(value: str | None) -> datetime | None:
    """An ISO date (valid through that day, UTC) or date-time (UTC when no offset is given)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConsentRequired(f"consent_expires_at must be an ISO date (2027-01-31) or date-time, "
                              f"not {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def read_voice_form(request: web.Request, max_audio_bytes: int) -> VoiceFormParts:
    """Read the multipart body, counting bytes as they arrive: more than ``max_audio_bytes`` of
    files is refused (413 ``file_too_large``) without reading the rest, a body that stalls or
    takes too long with 408 ``body_timeout``."""
    limit = max_audio_bytes + FORM_OVERHEAD_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise FileTooLarge(f"the upload is {request.content_length} bytes; the limit is "
                           f"{max_audio_bytes} bytes of audio")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send the voice as multipart/form-data")
    try:
        reader = await request.multipart()
        return await _read_parts(reader, max_audio_bytes, BodyReadClock(request, limit))
    except (AssertionError, ValueError, HttpProcessingError) as exc:  # the body's framing
        raise BadRequest(f"malformed multipart body: {exc}") from None


async def _read_parts(reader: MultipartReader, max_audio_bytes: int,
                      clock: BodyReadClock) -> VoiceFormParts:
    parts = VoiceFormParts()
    audio_bytes = 0
    while True:
        part = await clock.read(reader.next)
        if part is None:
            return parts
        if not isinstance(part, BodyPartReader) or not part.name:
            raise BadRequest("every part of the form needs a name (nested multipart is not "
                             "accepted)")
        if part.name == "file":
            if len(parts.files) == MAX_REFERENCE_FILES:
                raise BadRequest(f"at most {MAX_REFERENCE_FILES} reference files per voice")
            data, audio_bytes = await _read_part(part, max_audio_bytes - audio_bytes, audio_bytes,
                                                 clock)
            parts.files.append((part.filename or f"file-{len(parts.files)}", data))
        else:
            parts.add_text(part.name, await _read_text(part, clock))


async def _read_part(part: BodyPartReader, allowance: int, so_far: int,
                     clock: BodyReadClock) -> tuple[bytes, int]:
    chunks: list[bytes] = []
    size = 0
    next_chunk = partial(part.read_chunk, READ_CHUNK_BYTES)
    while chunk := await clock.read(next_chunk):
        size += len(chunk)
        if size > allowance:
            raise FileTooLarge(f"the uploaded audio is larger than the limit of "
                               f"{so_far + allowance} bytes")
        chunks.append(chunk)
    return b"".join(chunks), so_far + size


async def _read_text(part: BodyPartReader, clock: BodyReadClock) -> str:
    chunks: list[bytes] = []
    size = 0
    next_chunk = partial(part.read_chunk, READ_CHUNK_BYTES)
    while chunk := await clock.read(next_chunk):
        size += len(chunk)
        if size > MAX_TEXT_FIELD_BYTES:
            raise BadRequest(f"form field {part.name!r} is longer than {MAX_TEXT_FIELD_BYTES} "
                             "bytes")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"form field {part.name!r} is not UTF-8 text") from None


