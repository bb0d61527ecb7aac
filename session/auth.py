"""The bootstrap `demo` tenant's API key.

On first start the server creates a key for the `demo` tenant and writes it to
``DATA_DIR/demo-api-key`` (mode 0600); later starts reuse that file, and the server registers it (as
a hash) in the key store. Tooling (``timbre say``, the load test, the demo page) relies on the file.
Verification of keys and tokens is ``session.authn``.
"""

from __future__ import annotations

import os
from pathlib import Path

from session.ids import TenantId
from session.store.api_keys import KEY_PREFIX, new_api_key

DEMO_TENANT = TenantId("demo")
DEMO_KEY_FILE = "demo-api-key"


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
