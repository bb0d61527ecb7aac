"""Where a tenant's files live under ``DATA_DIR``, and how they are written and removed.

Layout::

    DATA_DIR/tenants/<tenant>/voices/<voice_id>/reference-<n>.wav   decoded reference audio
    DATA_DIR/tenants/<tenant>/voices/<voice_id>/reference-<n>.txt   its transcript, if one was sent
    DATA_DIR/tenants/<tenant>/jobs/<job_id>.<ext>                    a synthesis job's result

Every path component is an id the server generated (``session.ids``) or a fixed name, checked
against a strict pattern before it is used; nothing a client sends (file names, form fields) ever
becomes part of a path. As a second guard every path is resolved and must stay under ``DATA_DIR``
(a symlink planted inside the tree cannot lead out of it). A violation raises ``UnsafePath``, which
is a bug, never a client error.

Writes are atomic: the bytes go to a hidden temporary file in the same directory, are flushed to
disk, then renamed over the final name, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from session.ids import JobId, TenantId, VoiceId

TENANTS_DIR = "tenants"

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Generated tenant ids (``t_<hex>``) and bootstrap names such as ``demo``."""
_VOICE = re.compile(r"v_[0-9a-f]{16}")
_JOB = re.compile(r"job_[0-9a-f]{16}")
RESULT_EXTENSIONS = frozenset({"wav", "flac", "mp3", "ogg"})
MAX_REFERENCES = 64


class UnsafePath(ValueError):
    """A path component that is not a server-generated id, or a path that leaves ``DATA_DIR``."""


def check_tenant(tenant: str) -> TenantId:
    return TenantId(_check(_TENANT, tenant, "tenant id"))


def check_voice_id(voice_id: str) -> VoiceId:
    return VoiceId(_check(_VOICE, voice_id, "voice id"))


def check_job_id(job_id: str) -> JobId:
    return JobId(_check(_JOB, job_id, "job id"))


def is_voice_id(value: str) -> bool:
    """True when ``value`` has the shape of a generated voice id (for routing ``voice`` fields)."""
    return _VOICE.fullmatch(value) is not None


def is_job_id(value: str) -> bool:
    return _JOB.fullmatch(value) is not None


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise UnsafePath(f"not a valid {what}: {value!r}")
    return value


class TenantFiles:
    """Paths and file operations under one ``DATA_DIR``. Blocking (plain file I/O): call from a
    worker thread when the files are large."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()

    # -- paths -------------------------------------------------------------------------------------

    def tenant_dir(self, tenant: TenantId) -> Path:
        return self._inside(self.root / TENANTS_DIR / check_tenant(tenant))

    def voice_dir(self, tenant: TenantId, voice_id: VoiceId) -> Path:
        return self._inside(self.tenant_dir(tenant) / "voices" / check_voice_id(voice_id))

    def reference_path(self, tenant: TenantId, voice_id: VoiceId, index: int,
                       suffix: str = "wav") -> Path:
        """``reference-<index>.wav`` (or ``.txt`` for its transcript) of a voice."""
        if not 0 <= index < MAX_REFERENCES or suffix not in ("wav", "txt"):
            raise UnsafePath(f"no reference file {index}.{suffix}")
        return self._inside(self.voice_dir(tenant, voice_id) / f"reference-{index}.{suffix}")

    def relative(self, path: Path) -> str:
        """``path`` relative to ``DATA_DIR`` (POSIX separators), as stored in a voice profile."""
        return self._inside(path).relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """A stored relative name back to a path; ``UnsafePath`` if it would leave ``DATA_DIR``."""
        if not relative or relative.startswith("/") or "\\" in relative:
            raise UnsafePath(f"not a relative path: {relative!r}")
        return self._inside(self.root / relative)

    def job_path(self, tenant: TenantId, job_id: JobId, extension: str) -> Path:
        if extension not in RESULT_EXTENSIONS:
            raise UnsafePath(f"not a result format: {extension!r}")
        return self._inside(self.tenant_dir(tenant) / "jobs" / f"{check_job_id(job_id)}.{extension}")

    def _inside(self, path: Path) -> Path:
        """``path`` resolved (symlinks followed); ``UnsafePath`` unless it is under the root (or
        when it cannot be resolved at all: a NUL byte, a symlink loop)."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as err:  # ValueError: "embedded null byte"
            raise UnsafePath(f"{str(path)!r} cannot be resolved: {err}") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafePath(f"{path} is outside the data directory")
        return resolved

    # -- operations --------------------------------------------------------------------------------

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` (a path from this object) all at once or not at all."""
        with self.open_atomic(path) as f:
            f.write(data)

    @contextmanager
    def open_atomic(self, path: Path) -> Iterator[IO[bytes]]:
        """A binary file that appears at ``path`` only when the ``with`` block ends without an
        exception (a failure removes the temporary file and leaves ``path`` as it was)."""
        target = self._inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def temporary_path(self, path: Path) -> Path:
        """A hidden name next to ``path`` for a file written in several steps and then published
        with ``publish`` (e.g. audio written as it is synthesised)."""
        target = self._inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")

    def publish(self, temporary: Path, path: Path) -> None:
        """Flush ``temporary`` to disk and rename it to ``path`` atomically."""
        target = self._inside(path)
        fd = os.open(self._inside(temporary), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)

    def remove_voice(self, tenant: TenantId, voice_id: VoiceId) -> bool:
        """Delete a voice's directory and everything in it (reference audio, transcripts, data
        derived from them). Returns False when there was nothing to delete."""
        folder = self.voice_dir(tenant, voice_id)
        if not folder.exists():
            return False
        shutil.rmtree(folder)
        return True

    def remove_job_result(self, tenant: TenantId, job_id: JobId, extension: str) -> bool:
        path = self.job_path(tenant, job_id, extension)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_stale_temporaries(self, older_than_s: float) -> int:
        """Delete temporary files in the jobs directories not written to for ``older_than_s``
        (left by a process that died mid-job); returns how many."""
        base = self.root / TENANTS_DIR
        if not base.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for path in base.glob("*/jobs/.*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def job_results(self) -> Iterator[tuple[TenantId, JobId, str]]:
        """Every stored job result as (tenant, job id, extension); names that are not ours (and
        temporary files) are skipped."""
        base = self.root / TENANTS_DIR
        if not base.is_dir():
            return
        for tenant_dir in base.iterdir():
            jobs = tenant_dir / "jobs"
            if _TENANT.fullmatch(tenant_dir.name) is None or not jobs.is_dir():
                continue
            for entry in jobs.iterdir():
                stem, _, extension = entry.name.partition(".")
                if _JOB.fullmatch(stem) and extension in RESULT_EXTENSIONS:
                    yield TenantId(tenant_dir.name), JobId(stem), extension
