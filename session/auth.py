"""API keys: the bootstrap `demo` tenant key and key verification.

Only a SHA-256 hash of a key is kept in memory; comparison is constant-time. On first start the server
creates a key for the `demo` tenant and writes it to ``DATA_DIR/demo-api-key`` (mode 0600); later starts
reuse that file. Tooling (``timbre say``, the load test, the demo page) relies on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from session.errors import Unauthorized
from session.ids import TenantId

DEMO_TENANT = TenantId("demo")
DEMO_KEY_FILE = "demo-api-key"
KEY_PREFIX = "tk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    tenant: TenantId
    key_id: str


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def ensure_demo_key(data_dir: Path) -> tuple[str, bool]:
    """Return the demo key, creating ``data_dir/demo-api-key`` (0600) if absent.

    Returns ``(key, created)``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEMO_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key.startswith(KEY_PREFIX):
            os.chmod(path, 0o600)
            return key, False
    key = new_api_key()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
    return key, True


class KeyRing:
    """In-memory key verification by hash. The tenants issue moves keys to MongoDB behind the same
    ``authenticate`` contract."""

    def __init__(self) -> None:
        self._keys: dict[str, Principal] = {}

    def add(self, key: str, tenant: TenantId) -> None:
        digest = hash_key(key)
        self._keys[digest] = Principal(tenant, key_id=digest[:12])

    async def authenticate(self, token: str | None) -> Principal:
        """Raises Unauthorized for a missing or unknown key."""
        if not token:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or ?token=")
        digest = hash_key(token)
        for known, principal in self._keys.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise Unauthorized("invalid API key")
