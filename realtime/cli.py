"""The ``timbre`` command: ``serve`` runs the platform; ``say`` and ``loadtest`` are its clients."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from realtime.app import create_app
    from realtime.config import load_config

    overrides = {"host": args.host, "port": args.port, "data_dir": args.data_dir}
    config = load_config(toml_path=args.config, overrides=overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    print(f"timbre: serving on http://{config.server.host}:{config.server.port} "
          f"(data in {config.server.data_dir})", flush=True)
    from realtime.guards import RedactingAccessLogger

    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    web.run_app(app, host=config.server.host, port=config.server.port, print=None,
                access_log=access_log, access_log_class=RedactingAccessLogger,
                shutdown_timeout=5.0, loop=uvloop.new_event_loop())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timbre", description="Timbre real-time voice platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (engines, scheduler, APIs, demo page)")
    serve.add_argument("--host", default=None, help="bind address (env HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (env PORT, default 8080)")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="data directory (env DATA_DIR, default ./data)")
    serve.add_argument("--config", type=Path, default=None,
                       help="TOML configuration file (env TIMBRE_CONFIG)")
    serve.set_defaults(func=_serve)
    from loadtest.cli import add_parser as add_loadtest
    from realtime.admin_cli import add_parser as add_admin
    from realtime.clone_cli import add_parser as add_clone
    from realtime.say import add_parser as add_say
    from realtime.watermark_cli import add_parser as add_watermark

    add_say(sub)
    add_loadtest(sub)
    add_admin(sub)
    add_watermark(sub)
    add_clone(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
