"""Per-stream watermarking and its provenance record, wired without touching the transports.

Every transport builds a ``Session`` inside the request that authenticated its tenant. The app's auth
middleware ``bind``s the app's ``Stamper`` and the tenant into a context variable for that request;
the ``Session`` picks the binding up when it is created (``current``), and each of its contexts gets
a ``StreamMark``: a fresh random 32-bit stream id, an ``Embedder`` carrying it, and the provenance
record, written in the background (never delaying audio). Audio made outside any binding (e.g. a test
building a ``Session`` by hand) is still watermarked, with an id that resolves to no record.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from inference.engine import FloatAudio
from session.ids import TenantId
from session.store.provenance import ProvenanceStore
from session.watermark.embed import Embedder
from session.watermark.pattern import DEFAULT_KEY
from session.watermark.payload import ID_BITS

log = logging.getLogger(__name__)

API_VERSION = "v1"


def server_version() -> str:
    try:
        return version("timbre")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class WatermarkSettings:
    strength: float = 0.1
    """Nominal bump depth (natural-log magnitude) before the SNR-holding gain."""
    target_snr_db: float = Embedder.DEFAULT_TARGET_SNR_DB
    """Mark power below the host's (see docs/watermark.md for the measured SNR and robustness)."""
    key: str = field(default=DEFAULT_KEY.decode(), repr=False)
    """The secret that draws the pattern (``[watermark] key`` or env ``TIMBRE_WATERMARK_KEY``).
    Embedding and detection must share it: audio marked under one key is not detected under
    another. The built-in default keeps a fresh checkout working; a deployment sets its own. Kept
    out of ``repr`` so that logging the settings cannot leak it."""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("the watermark key must not be empty")

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()


class Stamper:
    """The app's watermarking service: settings plus where provenance records go."""

    def __init__(self, store: ProvenanceStore | None,
                 settings: WatermarkSettings | None = None) -> None:
        self.store = store
        self.settings = settings or WatermarkSettings()
        self._writes: set[asyncio.Task[None]] = set()

    def mark(self, tenant: TenantId | None, voice_id: str, sample_rate_hz: int) -> StreamMark:
        """A new stream's mark; its record is written in the background (on the running loop)."""
        stream_id = secrets.randbits(ID_BITS)
        embedder = Embedder(stream_id, sample_rate_hz, key=self.settings.key_bytes,
                            strength=self.settings.strength,
                            target_snr_db=self.settings.target_snr_db)
        if self.store is not None:
            task = asyncio.get_running_loop().create_task(
                self._record(stream_id, tenant, voice_id))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        return StreamMark(stream_id, embedder)

    async def _record(self, stream_id: int, tenant: TenantId | None, voice_id: str) -> None:
        assert self.store is not None
        try:
            created = await self.store.create(stream_id, tenant, voice_id, API_VERSION,
                                              server_version())
        except Exception:  # the audio is already marked; a lost record is logged, not fatal
            log.exception("could not record provenance of stream %08x", stream_id)
            return
        if created is None:
            log.warning("provenance id %08x collided with an earlier stream", stream_id)

    async def drain(self) -> None:
        """Wait for pending record writes (shutdown, tests)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


@dataclass(frozen=True)
class StreamMark:
    stream_id: int
    embedder: Embedder

    def process(self, chunk: FloatAudio) -> FloatAudio:
        return self.embedder.process(chunk)


@dataclass(frozen=True)
class Binding:
    stamper: Stamper
    tenant: TenantId | None


_BINDING: contextvars.ContextVar[Binding | None] = contextvars.ContextVar(
    "timbre_watermark_binding", default=None)
_UNBOUND = Stamper(None)


@contextmanager
def bind(stamper: Stamper, tenant: TenantId | None) -> Iterator[None]:
    """Within the block (and tasks it starts), sessions mark for ``tenant`` through ``stamper``."""
    token = _BINDING.set(Binding(stamper, tenant))
    try:
        yield
    finally:
        _BINDING.reset(token)


def claim(tenant: TenantId) -> None:
    """Name the tenant of the running request once a transport has authenticated it itself (the
    ElevenLabs-compatible routes read their key from the first message); the middleware's binding
    is restored when the request ends."""
    binding = _BINDING.get()
    if binding is not None:
        _BINDING.set(Binding(binding.stamper, tenant))


def current() -> Binding:
    """The binding of the running request, or an unbound stamper (marks, records nothing)."""
    return _BINDING.get() or Binding(_UNBOUND, None)
