"""``POST /v1/watermark/detect``: is this audio Timbre's, and (for its owner) which stream made it.

The body is ``multipart/form-data`` with one ``file`` part holding audio in any common container
(wav, mp3, flac, ogg/opus, webm). The answer is ``{detected, confidence, stream_id?, provenance?}``:
``provenance`` (generation time, voice, API version) only when the stream belongs to the caller's
tenant -- another tenant learns that the audio is watermarked, never whose it is. Errors: 400
(no ``file`` part, not multipart), 408 (the body stalled or took too long:
``realtime.guards.BodyReadClock``), 413 (over ``MAX_UPLOAD_BYTES``), 415 (not decodable audio).

Provenance comes from matching the clip's payload against the caller's recent stream ids
(``session.watermark.payload.best_match``).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from realtime.appkeys import PRINCIPAL, STAMPER
from realtime.guards import BodyReadClock
from realtime.rest import api
from session.errors import BadRequest, TimbreError
from session.ids import TenantId
from session.reference_audio import (
    FileTooLarge,
    ReferenceChecks,
    TooLong,
    UndecodableAudio,
    decode_reference,
)
from session.store.provenance import ProvenanceRecord, ProvenanceStore
from session.watermark.detect import ANALYSIS_RATE_HZ, Detection, detect
from session.watermark.pattern import DEFAULT_KEY
from session.watermark.payload import best_match

PATH = "/v1/watermark/detect"
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
FORM_OVERHEAD_BYTES = 65536
"""Room for the multipart framing and other parts besides the file."""
MAX_AUDIO_S = 600.0
READ_CHUNK_BYTES = 64 * 1024
CANDIDATES = 10_000
"""How many of the caller's newest streams a clip's payload is matched against."""


class UnsupportedAudio(TimbreError):
    code = "unsupported_audio"
    http_status = 415
    close_code = None


async def read_upload(request: web.Request) -> bytes:
    """The ``file`` part's bytes. Raises BadRequest, FileTooLarge (counting as bytes arrive),
    BodyTimeout (the body stalled or took too long)."""
    if request.content_length is not None and (request.content_length
                                               > MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES):
        raise FileTooLarge(f"the upload is {request.content_length} bytes; the limit is "
                           f"{MAX_UPLOAD_BYTES}")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send the audio as multipart/form-data with a 'file' part")
    try:
        clock = BodyReadClock(request, MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES)
        reader = await request.multipart()
        while (part := await clock.read(reader.next)) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return await _read_part(part, clock)
            if isinstance(part, BodyPartReader):  # skipped chunk by chunk: each within the idle deadline
                while await clock.read(partial(part.read_chunk, READ_CHUNK_BYTES)):
                    pass
    except (AssertionError, ValueError, HttpProcessingError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    raise BadRequest("the form has no 'file' part")


async def _read_part(part: BodyPartReader, clock: BodyReadClock) -> bytes:
    chunks: list[bytes] = []
    size = 0
    next_chunk = partial(part.read_chunk, READ_CHUNK_BYTES)
    while chunk := await clock.read(next_chunk):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise FileTooLarge(f"the file is over the {MAX_UPLOAD_BYTES}-byte limit")
        chunks.append(chunk)
    if not size:
        raise BadRequest("the 'file' part is empty")
    return b"".join(chunks)


def detect_bytes(data: bytes, key: bytes = DEFAULT_KEY) -> Detection:
    """Decode (any common container, mono at the analysis rate) and detect the pattern of ``key``.
    Raises UnsupportedAudio or FileTooLarge (over ``MAX_AUDIO_S``)."""
    checks = ReferenceChecks(sample_rate_hz=ANALYSIS_RATE_HZ, max_duration_s=MAX_AUDIO_S)
    try:
        decoded = decode_reference("file", data, checks)
    except UndecodableAudio as exc:
        raise UnsupportedAudio(exc.message) from None
    except TooLong:
        raise FileTooLarge(f"the file holds more than {MAX_AUDIO_S:.0f} s of audio") from None
    if decoded.source_sample_rate_hz <= 8000:  # band-limited at the source: analyse as telephone audio
        return detect(decoded.audio, ANALYSIS_RATE_HZ, key, narrowband=True)
    return detect(decoded.audio, ANALYSIS_RATE_HZ, key)


async def provenance_for(store: ProvenanceStore, tenant: TenantId, found: Detection,
                         key: bytes = DEFAULT_KEY) -> ProvenanceRecord | None:
    """The caller's own stream behind the clip, if its payload matches one of the caller's newest
    ``CANDIDATES`` streams (other tenants' streams are never candidates)."""
    if not found.detected:
        return None
    candidates = await store.recent_ids(tenant, CANDIDATES)
    matched = best_match(found.analysis.payload, candidates, key)
    return None if matched is None else await store.get(matched)


def provenance_json(record: ProvenanceRecord) -> dict[str, Any]:
    return {"stream_id": f"{record.stream_id:08x}", "tenant": record.tenant,
            "voice_id": record.voice_id, "api_version": record.api_version,
            "server_version": record.server_version,
            "generated_at": record.generated_at.isoformat().replace("+00:00", "Z")}


@api
async def detect_handler(request: web.Request) -> web.Response:
    data = await read_upload(request)
    stamper = request.app[STAMPER]
    key = stamper.settings.key_bytes
    found = await asyncio.get_running_loop().run_in_executor(None, detect_bytes, data, key)
    body: dict[str, Any] = {"detected": found.detected,
                            "confidence": round(found.confidence, 6),
                            "score": round(found.analysis.z, 3)}
    store = stamper.store
    if store is not None:
        record = await provenance_for(store, request[PRINCIPAL].tenant, found, key)
        if record is not None:
            body["provenance"] = provenance_json(record)
    return web.json_response(body)


def add_watermark_routes(app: web.Application) -> None:
    app.router.add_post(PATH, detect_handler)
