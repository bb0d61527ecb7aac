"""The building blocks of the OpenAPI document (``realtime.openapi``): the shared component
schemas (``SCHEMAS``), the error answer of each status, and the helpers that write an operation,
a JSON body or a ``$ref``.

Two answers come from the edge rather than from a handler, so ``operation`` adds them itself
instead of every operation listing them (and one being forgotten): the 429 ``rate_limited`` with
``Retry-After`` on every authenticated (``/v1/``) operation (``realtime.ratelimit_guard``), and
the 408 ``body_timeout`` on every operation that reads a request body
(``realtime.guards.BodyReadClock``).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ERROR_CODES = {
    400: "bad_request, bad_format, ...: the request is malformed",
    401: "unauthorized: missing, unknown, revoked or expired credential",
    402: "quota_exceeded or profile_limit: the tier's allowance is used up",
    403: "forbidden (the credential lacks the scope) or format_not_allowed (not in the tier)",
    404: "unknown_voice / unknown_job: no such id for this tenant (another tenant's ids too)",
    408: "body_timeout: the request body stopped arriving (no byte for 15 s) or was not complete "
         "within its deadline (60 s plus its size at 64 KiB/s; `[server] body_*`); retry",
    409: "the object is not in a state that allows this (voice_unavailable, no_audio, ...)",
    413: "file_too_large / text_too_long: the body is over the limit",
    415: "unsupported_audio: the upload is not audio in a format the server decodes",
    422: "the values are readable but refused (reference-audio checks, consent_required)",
    429: "too_many_streams: the tier's concurrent streams are all open",
    503: "server_busy: no capacity now; retry later",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema, example: Any = None) -> Schema:
    content: Schema = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


def errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): {"description": ERROR_CODES[s], "content": json_content(ref("Error"))}
            for s in statuses}


RETRY_AFTER: Schema = {
    "description": "Whole seconds to wait before the request can succeed.",
    "schema": {"type": "integer", "minimum": 1}, "example": 3}
"""``components.headers.Retry-After`` (``realtime.openapi``)."""


def rate_limited(streams: bool = False) -> Schema:
    """The 429 of a ``/v1/`` operation; ``streams``: the operation opens a stream, so the tier's
    concurrent-stream cap (``too_many_streams``) answers 429 too."""
    description = ("rate_limited: over the tenant's requests per second (`[rate_limit]`; "
                   "unauthenticated: the client address's); wait `Retry-After` seconds. "
                   "In OpenAI's or ElevenLabs' error shape on their routes.")
    if streams:
        description += " Or " + ERROR_CODES[429] + " (no Retry-After)."
    return {"description": description,
            "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
            "content": json_content(ref("Error"))}


def path_param(name: str, description: str, example: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}, "example": example}


def operation(summary: str, description: str, tag: str, responses: dict[str, Schema], *,
        scope: str | None = None, parameters: list[Schema] | None = None,
        body: Schema | None = None, public: bool = False) -> Schema:
    op: Schema = {"summary": summary, "description": description, "tags": [tag],
                  "operationId": summary.lower().replace(" ", "_").replace("'", ""),
                  "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if scope is not None:
        op["x-scope"] = scope
    if public:
        op["security"] = []
    else:
        if body is not None:
            responses.update(errors(408))
        responses.update(errors(401))
        responses["429"] = rate_limited(streams="429" in responses)
    return op


VOICE_ID = path_param("voice_id", "A voice profile id (v_...).", "v_0123456789abcdef")
JOB_ID = path_param("job_id", "A job id (job_...).", "job_0123456789abcdef")
ISO_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "example": "unknown_voice"},
                           "message": {"type": "string"}}}},
    },
    "StockVoice": {
        "type": "object", "description": "A voice that ships with the server (read-only).",
        "properties": {
            "voice_id": {"type": "string", "example": "piper:joe"},
            "kind": {"const": "stock"}, "name": {"type": "string", "example": "joe"},
            "engine": {"type": "string", "example": "piper"}, "status": {"const": "ready"}},
    },
    "Voice": {
        "type": "object",
        "description": "A voice profile of the tenant. Without a cloning engine (XTTS) a profile "
                       "speaks with the stock voice closest to its reference (`base_voice`) "
                       "through a conversion stage fitted to the reference (`converted`). "
                       "Every voice also carries ElevenLabs' fields (`category`, `labels`, "
                       "`description`, `preview_url`, `settings`, ...), so ElevenLabs clients "
                       "can read the same list (docs/elevenlabs.md).",
        "properties": {
            "voice_id": {"type": "string", "example": "v_0123456789abcdef"},
            "kind": {"const": "profile"}, "name": {"type": "string", "example": "Narrator"},
            "status": {"enum": ["pending", "ready", "failed", "revoked"]},
            "error": {"type": ["string", "null"], "description": "Why it failed."},
            "base_voice": {"type": ["string", "null"], "example": "piper:joe"},
            "base_similarity": {"type": ["number", "null"], "example": 0.63,
                                "description": "Speaker-embedding cosine to the base voice."},
            "converted": {"type": "boolean",
                          "description": "The profile speaks through its own conversion stage."},
            "clone_similarity": {"type": ["number", "null"], "example": 0.81,
                                 "description": "The clone job's check: the converted base voice "
                                                "saying the transcript, against the reference."},
            "mix": {"type": ["array", "null"], "description": "A mix's sources and weights.",
                    "items": {"type": "object", "properties": {
                        "voice_id": {"type": "string"}, "weight": {"type": "number"}}}},
            "reference_files": {"type": "integer"},
            "consent_id": {"type": "string"},
            "created_at": ISO_TIME, "updated_at": ISO_TIME,
            "category": {"enum": ["premade", "cloned"],
                         "description": "ElevenLabs' field: stock voices are premade."},
            "labels": {"type": "object"},
            "is_owner": {"type": "boolean"}},
    },
    "VoiceDetail": {
        "allOf": [ref("Voice"), {"type": "object", "properties": {
            "consent": {"oneOf": [ref("Consent"), {"type": "null"}]},
            "job": {"oneOf": [ref("Job"), {"type": "null"}],
                    "description": "The latest clone job (null once expired)."}}}],
    },
    "Consent": {
        "type": "object",
        "properties": {
            "consent_id": {"type": "string"}, "owner_name": {"type": "string"},
            "statement": {"type": "string"}, "purpose": {"type": "string"},
            "expires_at": ISO_TIME,
            "uploaded_by": {"type": "string", "description": "The key that uploaded it."},
            "created_at": ISO_TIME, "revoked_at": ISO_TIME},
    },
    "Job": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "example": "job_0123456789abcdef"},
            "kind": {"enum": ["clone", "synthesize"]},
            "status": {"enum": ["queued", "running", "succeeded", "failed"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "subject": {"type": ["string", "null"],
                        "description": "The voice the job works on or speaks with."},
            "error": {"oneOf": [{"type": "null"}, {
                "type": "object", "properties": {"code": {"type": "string",
                                                          "example": "interrupted"},
                                                 "message": {"type": "string"}}}]},
            "result": {"oneOf": [{"type": "null"}, ref("SynthesisResult"),
                                 ref("CloneResult")]},
            "created_at": ISO_TIME, "updated_at": ISO_TIME,
            "expires_at": {**ISO_TIME, "description": "When a finished job (and its audio) is "
                                                      "deleted."}},
    },
    "CloneResult": {
        "type": "object",
        "properties": {"voice_id": {"type": "string"},
                       "base_voice": {"type": "string", "example": "piper:joe"},
                       "base_similarity": {"type": "number"}},
    },
    "SynthesisResult": {
        "type": "object",
        "properties": {
            "audio_url": {"type": "string", "example": "/v1/jobs/job_0123456789abcdef/audio"},
            "duration_s": {"type": "number"}, "format": {"enum": ["wav", "flac", "mp3", "ogg"]},
            "characters": {"type": "integer"}, "sample_rate_hz": {"type": "integer"},
            "voice": {"type": "string"},
            "skipped_units": {"type": "integer",
                              "description": "Pieces with nothing to pronounce."}},
    },
    "SynthesisRequest": {
        "type": "object", "required": ["text", "voice"], "additionalProperties": False,
        "properties": {
            "text": {"type": "string", "maxLength": 200000,
                     "description": "Up to 200,000 characters (configurable)."},
            "voice": {"type": "string", "example": "piper:joe",
                      "description": "A stock voice id or one of your ready profiles."},
            "format": {"enum": ["wav", "flac", "mp3", "ogg"], "default": "wav"},
            "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
            "pitch": {"type": "number", "minimum": -6, "maximum": 6, "default": 0,
                      "description": "Semitones up (+) or down (-)."},
            "language": {"type": "string", "example": "en",
                         "description": "A language the voice speaks (Kokoro voices: en, "
                                        "en-gb, es, fr, it, pt-br, hi); otherwise 400 "
                                        "unsupported_language."}},
    },
    "VoiceUpload": {
        "type": "object",
        "required": ["name", "file", "consent_owner_name", "consent_statement",
                     "consent_accepted", "consent_purpose"],
        "properties": {
            "name": {"type": "string", "maxLength": 100, "example": "Narrator"},
            "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                     "description": "One or more reference recordings (wav, mp3, flac, ogg, webm; "
                                    "any rate): at least 10 s of speech in total, 30 s "
                                    "recommended, one speaker, not clipped, little noise. "
                                    "At most 50 MB together (configurable)."},
            "transcript": {"type": "array", "items": {"type": "string"},
                           "description": "Optional: the i-th transcript is what the i-th file "
                                          "says."},
            "consent_owner_name": {"type": "string", "description": "The voice owner."},
            "consent_statement": {"type": "string",
                                  "description": "The statement the owner accepted."},
            "consent_accepted": {"type": "boolean", "description": "Must be true."},
            "consent_purpose": {"type": "string"},
            "consent_expires_at": {"type": "string", "format": "date",
                                   "description": "Optional ISO date (valid through that day, "
                                                  "UTC) or date-time."}},
    },
    "Tier": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "example": "pro"},
            "characters_per_month": {"type": ["integer", "null"],
                                     "description": "null: unlimited"},
            "max_profiles": {"type": ["integer", "null"]},
            "max_concurrent_streams": {"type": "integer"},
            "output_formats": {"type": ["array", "null"], "items": {"type": "string"}}},
    },
    "UsageMonth": {
        "type": "object",
        "properties": {"month": {"type": "string", "example": "2026-11"},
                       "characters": {"type": "integer"}, "audio_s": {"type": "number"},
                       "requests": {"type": "integer"}},
    },
    "Usage": {
        "type": "object",
        "properties": {
            "tenant": {"type": "string"}, "tier": ref("Tier"), "month": ref("UsageMonth"),
            "history": {"type": "array", "items": ref("UsageMonth"),
                        "description": "Recent months with usage, newest first."},
            "profiles": {"type": "integer", "description": "Pending and ready profiles."},
            "streams": {"type": "integer", "description": "Streams open now."},
            "remaining": {"type": "object", "properties": {
                "characters": {"type": ["integer", "null"]},
                "profiles": {"type": ["integer", "null"]}, "streams": {"type": "integer"}}}},
    },
    "TokenRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "ttl_s": {"type": "integer", "minimum": 1, "default": 300},
            "scopes": {"type": "array",
                       "items": {"enum": ["tts", "voices:read", "voices:write"]},
                       "description": "Default: the caller's; may only narrow them."}},
    },
    "Token": {
        "type": "object",
        "properties": {"token": {"type": "string"},
                       "expires_at": {"type": "integer", "description": "Unix seconds."},
                       "tenant": {"type": "string"}},
    },
}
