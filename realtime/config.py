"""Typed configuration: one frozen object, from defaults, an optional TOML file and the environment.

Precedence (highest first): command-line flags, environment (``HOST``, ``PORT``, ``DATA_DIR``,
``MONGO_URL``, ``REDIS_URL``, ``TIMBRE_CONFIG``), the TOML file, defaults. The TOML file has one table per part::

    [server]    host, port, data_dir, allowed_origins, access_log, body_timeout_s, ...
    [scheduler] max_batch, step_budget_ms, max_lead_s, safety_margin_s, max_streams, ...
    [session]   max_contexts, max_context_chars, inactivity_timeout_s, output_buffer_bytes, ...
    [segmenter] first_unit_min_words, first_unit_max_words, max_unit_words, ...
    [piper]     first_chunk_frames, chunk_frames, intra_op_threads, ...
    [kokoro]    enabled, cache_dir, first_chunk_frames, chunk_frames, context_frames, ...
    [xtts]      checkpoint_dir, device, dtype, max_active, cuda_graphs; [xtts.voices] name = "ref.wav"
    [auth]      jwt_secret | jwt_public_key (+ jwt_private_key), audience, token_ttl_s, ...
    [tiers.NAME] characters_per_month, max_profiles, max_concurrent_streams, output_formats
    [jobs] [synthesis] [reference]  job concurrency, long-text limits, reference-audio thresholds
    [cloning]   conversion, base_voices, transcribe, max_fit_speech_s, warm_base_voices
    [watermark] key (secret; env ``TIMBRE_WATERMARK_KEY`` wins), strength, target_snr_db
    [rate_limit] enabled, requests_per_s, burst, unauthenticated_per_s, ... (realtime.ratelimit)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from inference.kokoro_config import KokoroConfig
from inference.piper import PiperConfig
from inference.scheduler import SchedulerConfig
from inference.xtts_settings import XttsSettings
from realtime.ratelimit import RateLimitConfig
from session.authn import AuthConfig
from session.cloning import CloningConfig
from session.jobs import JobsConfig
from session.reference_audio import ReferenceChecks
from session.segment import SegmenterConfig
from session.session import SessionConfig
from session.synthesis import SynthesisConfig
from session.tiers import TierTable
from session.watermark.stamp import WatermarkSettings


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    max_message_bytes: int = 65536
    mongo_url: str | None = None
    """MongoDB to use (env ``MONGO_URL``). Unset: an embedded SecantusDB under ``data_dir/mongo``."""
    redis_url: str | None = None
    """Redis for limits shared across nodes (env ``REDIS_URL``). Unset: in-process limits."""
    demo_tier: str = "enterprise"
    """Tier of the bootstrap ``demo`` tenant."""
    demo_sign_in: bool = True
    """Give local (loopback) visitors of the demo page a demo-tenant token."""
    allowed_origins: tuple[str, ...] = ()
    """Origins (``https://app.example.com``; ``"*"``: any) whose pages may open WebSockets here,
    besides the server's own origin. Handshakes without ``Origin`` (non-browsers) are not
    affected (``realtime.guards``)."""
    access_log: bool = False
    """Log one line per request, credentials in the query redacted (``realtime.guards``)."""
    body_idle_timeout_s: float = 15.0
    """A request body that sends no byte for this long is refused (408 ``body_timeout``)."""
    body_timeout_s: float = 60.0
    """Every request body may take this long, plus its size at ``body_min_bytes_per_s``."""
    body_min_bytes_per_s: float = 64 * 1024
    """The slowest upload rate a legitimate client is allowed (``realtime.guards``)."""


@dataclass(frozen=True)
class AppConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    piper: PiperConfig = field(default_factory=PiperConfig)
    kokoro: KokoroConfig = field(default_factory=KokoroConfig)
    xtts: XttsSettings = field(default_factory=XttsSettings)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tiers: TierTable = field(default_factory=TierTable)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    reference: ReferenceChecks = field(default_factory=ReferenceChecks)
    cloning: CloningConfig = field(default_factory=CloningConfig)
    watermark: WatermarkSettings = field(default_factory=WatermarkSettings)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)


_D = TypeVar("_D")


def _with(obj: _D, values: Mapping[str, Any]) -> _D:
    """``obj`` with fields replaced from ``values``; unknown names are an error (typos fail loudly)."""
    names = {f.name: f for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {type(obj).__name__} settings: {sorted(unknown)}")
    converted = {}
    for key, value in values.items():
        current = getattr(obj, key)
        if isinstance(current, Path):
            value = Path(value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        converted[key] = value
    return dataclasses.replace(obj, **converted)  # type: ignore[type-var]


def load_config(
    env: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Build the app's configuration. ``overrides`` are server settings from command-line flags
    (None values are ignored)."""
    env = os.environ if env is None else env
    path = toml_path or (Path(env["TIMBRE_CONFIG"]) if env.get("TIMBRE_CONFIG") else None)
    tables: dict[str, Any] = tomllib.loads(path.read_text()) if path else {}
    unknown = set(tables) - {"server", "scheduler", "session", "segmenter", "piper", "xtts",
                             "kokoro", "auth", "tiers", "jobs", "synthesis", "reference",
                             "cloning", "watermark", "rate_limit"}
    if unknown:
        raise ValueError(f"unknown config tables: {sorted(unknown)}")
    server = _with(ServerConfig(), tables.get("server", {}))
    from_env = {
        "host": env.get("HOST"),
        "port": int(env["PORT"]) if env.get("PORT") else None,
        "data_dir": env.get("DATA_DIR"),
        "mongo_url": env.get("MONGO_URL"),
        "redis_url": env.get("REDIS_URL"),
    }
    server = _with(server, {k: v for k, v in from_env.items() if v})
    server = _with(server, {k: v for k, v in (overrides or {}).items() if v is not None})
    session = _with(SessionConfig(), tables.get("session", {}))
    session = dataclasses.replace(
        session, segmenter=_with(session.segmenter, tables.get("segmenter", {}))
    )
    return AppConfig(
        server=server,
        scheduler=_with(SchedulerConfig(), tables.get("scheduler", {})),
        session=session,
        piper=_with(PiperConfig(), tables.get("piper", {})),
        kokoro=_with(KokoroConfig(), tables.get("kokoro", {})),
        xtts=_with(XttsSettings(), tables.get("xtts", {})),
        auth=_with(AuthConfig(), tables.get("auth", {})),
        tiers=TierTable.from_mapping(tables.get("tiers", {})),
        jobs=_with(JobsConfig(), tables.get("jobs", {})),
        synthesis=_with(SynthesisConfig(), tables.get("synthesis", {})),
        reference=_with(ReferenceChecks(), tables.get("reference", {})),
        cloning=_with(CloningConfig(), tables.get("cloning", {})),
        watermark=_with(WatermarkSettings(), {**tables.get("watermark", {}), **(
            {"key": env["TIMBRE_WATERMARK_KEY"]} if env.get("TIMBRE_WATERMARK_KEY") else {})}),
        rate_limit=_with(RateLimitConfig(), tables.get("rate_limit", {})),
    )


__all__ = ["AppConfig", "SegmenterConfig", "ServerConfig", "load_config"]
