"""The ``timbre`` command: ``serve`` runs the platform; ``say`` and ``loadtest`` are its clients.

Start-up cost matters here: every subcommand's module pulls in its own stack (``watermark`` and the
stream client reach torch and scipy through the session layer, ``admin`` motor and the engine
configuration), several seconds in all. So the parser only *names* the subcommands: each is a
placeholder holding its help line, and ``_LazySubcommands`` imports the module that defines the
real parser (its ``add_parser``) only once argparse has picked that subcommand. ``timbre --help``
therefore imports no subcommand module, and ``timbre say --help`` only ``realtime.say`` (which
imports its stream client when it runs).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand's parser lives (a module with ``add_parser(subparsers)``) and the help
    line ``timbre --help`` shows for it without importing that module (the test suite checks the
    line against the one the module registers)."""

    module: str
    help: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "say": Subcommand("realtime.say", "speak a text through a running server into a WAV file"),
    "loadtest": Subcommand("loadtest.cli", "load-test a running server with simulated voice agents"),
    "admin": Subcommand("realtime.admin_cli", "manage tenants and API keys"),
    "watermark": Subcommand("realtime.watermark_cli", "detect Timbre's audio watermark in a file"),
    "clone": Subcommand("realtime.clone_cli",
                        "create a voice profile from reference audio and wait until it is ready"),
}


class _LazySubcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """A subparsers action whose lazy entries are placeholders until argparse dispatches to one.

    A placeholder is a real (empty) parser registered under the subcommand's name, so listing,
    ``{serve,say,...}`` and "invalid choice" errors work as argparse does them. When the command
    line picks it, ``load`` imports the subcommand's module, lets its ``add_parser`` build the real
    parser on a scratch subparsers action of the same ``prog`` and swaps that parser in.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, str] = {}

    def add_lazy(self, name: str, subcommand: Subcommand) -> None:
        self.add_parser(name, help=subcommand.help, add_help=False)
        self._lazy[name] = subcommand.module

    def load(self, name: str) -> argparse.ArgumentParser:
        """The real parser of ``name`` (importing its module the first time)."""
        module_name = self._lazy.pop(name, None)
        if module_name is not None:
            scratch = argparse._SubParsersAction(  # same prog prefix: "timbre <name>" in usage
                option_strings=[], prog=self._prog_prefix, parser_class=self._parser_class)
            importlib.import_module(module_name).add_parser(scratch)
            self._name_parser_map.update(scratch._name_parser_map)
        parser: argparse.ArgumentParser = self._name_parser_map[name]
        return parser

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        if isinstance(values, list) and values and values[0] in self._lazy:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def _serve(args: argparse.Namespace) -> int:
    import uvloop
    from aiohttp import web

    from realtime.app import create_app
    from realtime.config import load_config
    from realtime.guards import RedactingAccessLogger

    overrides = {"host": args.host, "port": args.port, "data_dir": args.data_dir}
    config = load_config(toml_path=args.config, overrides=overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    print(f"timbre: serving on http://{config.server.host}:{config.server.port} "
          f"(data in {config.server.data_dir})", flush=True)
    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    web.run_app(app, host=config.server.host, port=config.server.port, print=None,
                access_log=access_log, access_log_class=RedactingAccessLogger,
                shutdown_timeout=5.0, loop=uvloop.new_event_loop())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``timbre`` parser; cheap: no subcommand module is imported until one is parsed."""
    parser = argparse.ArgumentParser(prog="timbre", description="Timbre real-time voice platform")
    sub = parser.add_subparsers(dest="command", required=True, action=_LazySubcommands)
    assert isinstance(sub, _LazySubcommands)
    serve = sub.add_parser("serve", help="run the server (engines, scheduler, APIs, demo page)")
    serve.add_argument("--host", default=None, help="bind address (env HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (env PORT, default 8080)")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="data directory (env DATA_DIR, default ./data)")
    serve.add_argument("--config", type=Path, default=None,
                       help="TOML configuration file (env TIMBRE_CONFIG)")
    serve.set_defaults(func=_serve)
    for name, subcommand in SUBCOMMANDS.items():
        sub.add_lazy(name, subcommand)
    return parser


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The real parser of subcommand ``name`` of a ``build_parser()`` parser, imported now."""
    for action in parser._actions:
        if isinstance(action, _LazySubcommands):
            return action.load(name)
    raise KeyError(name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
