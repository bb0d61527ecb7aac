"""``timbre admin`` run in-process through ``realtime.cli.main``, against real SecantusDB servers:
the data dir's own embedded one, a running server's (``DATA_DIR/mongo-url``), and ``MONGO_URL``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime.admin_cli import MONGO_URL_FILE
from realtime.cli import main
from session.authn import AuthConfig, Authenticator, Scope, load_jwt_keys
from session.db import EmbeddedMongo, Stores, free_port, open_database
from session.errors import Unauthorized
from session.ids import TenantId
from tests.services import run_sync


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``timbre admin ARGV``; returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(["admin", *argv])
    out, err = capsys.readouterr()
    return status, out, err


async def principal_of(url: str, key: str) -> tuple[TenantId, frozenset[Scope]]:
    db = open_database(url)
    try:
        stores = await Stores.open(db)
        config = AuthConfig(jwt_secret="s" * 40)
        auth = Authenticator(stores.api_keys, stores.tenants, load_jwt_keys(config, Path(".")),
                             config)
        principal = await auth.authenticate(key)
        return principal.tenant, principal.scopes
    finally:
        db.client.close()


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A data dir whose embedded server is run by someone else (as ``timbre serve`` does), with its
    URL published in ``DATA_DIR/mongo-url``: (data dir, url)."""
    data_dir = tmp_path_factory.mktemp("serving")
    mongo = EmbeddedMongo(data_dir, stop_timeout_s=0.0)
    url = run_sync(mongo.start())
    (data_dir / MONGO_URL_FILE).write_text(url + "\n")
    yield data_dir, url
    run_sync(mongo.close())


@pytest.mark.slow  # four embedded-server starts and graceful stops: about 20 s
def test_create_tenant_and_key_on_the_data_dirs_own_embedded_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    # left behind by a server that is gone: ignored
    (tmp_path / MONGO_URL_FILE).write_text(f"mongodb://127.0.0.1:{free_port()}\n")
    status, out, err = admin(capsys, "create-tenant", "--name", "acme", "--tier", "pro", *data)
    assert status == 0, err
    tenant_id = out.strip()
    assert re.fullmatch(r"t_[0-9a-f]{16}", tenant_id) and "tier pro" in err

    status, out, err = admin(capsys, "create-key", "--tenant", "acme", "--name", "ci", *data)
    assert status == 0, err
    key = out.strip()
    assert key.startswith("tk_") and "\n" not in key and "shown only now" in err
    assert key not in err

    status, out, _ = admin(capsys, "list-tenants", *data)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["TENANT_ID", "NAME", "TIER", "CREATED"]
    assert row.split()[:3] == [tenant_id, "acme", "pro"]

    # Each command stopped its server: the storage is free for the next one, and the key works.
    async def check() -> tuple[TenantId, frozenset[Scope]]:
        async with EmbeddedMongo(tmp_path, stop_timeout_s=0.0) as mongo:
            return await principal_of(mongo.url, key)

    assert run_sync(check()) == (tenant_id, frozenset(Scope))


def test_commands_use_the_running_servers_database(
        serving: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, url = serving
    data = ["--data-dir", str(data_dir)]
    status, out, err = admin(capsys, "create-tenant", "--name", "beta", "--tier", "free", *data)
    assert status == 0, err
    tenant_id = out.strip()
    status, out, err = admin(capsys, "create-key", "--tenant", tenant_id, "--scope", "tts", *data)
    assert status == 0, err
    key = out.strip()
    assert run_sync(principal_of(url, key)) == (tenant_id, frozenset({Scope.TTS}))

    key_id = re.search(r"API key (key_[0-9a-f]+)", err)
    assert key_id is not None
    status, _, err = admin(capsys, "revoke-key", key_id.group(1), *data)
    assert status == 0 and "revoked" in err
    with pytest.raises(Unauthorized):
        run_sync(principal_of(url, key))


def test_refusals_say_what_is_wrong(
        serving: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(serving[0])]
    assert admin(capsys, "create-tenant", "--name", "gamma", *data)[0] == 0
    status, out, err = admin(capsys, "create-tenant", "--name", "gamma", *data)
    assert (status, out) == (1, "") and "already exists" in err
    status, _, err = admin(capsys, "create-tenant", "--name", "delta", "--tier", "gold", *data)
    assert status == 1 and "unknown tier 'gold'" in err
    status, _, err = admin(capsys, "create-key", "--tenant", "nobody", *data)
    assert status == 1 and "no tenant named 'nobody'" in err
    status, _, err = admin(capsys, "revoke-key", "key_0000", *data)
    assert status == 1 and "no API key" in err
    with pytest.raises(SystemExit):
        admin(capsys, "create-key", "--tenant", "gamma", "--scope", "root", *data)


def test_mongo_url_wins_over_the_data_dir(
        serving: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = serving
    monkeypatch.setenv("MONGO_URL", url)
    status, out, err = admin(capsys, "create-tenant", "--name", "epsilon", "--data-dir",
                             str(tmp_path))
    assert status == 0, err
    status, out, _ = admin(capsys, "list-tenants", "--data-dir", str(tmp_path))
    assert "epsilon" in out
    assert not (tmp_path / "mongo").exists()  # no embedded server was started
