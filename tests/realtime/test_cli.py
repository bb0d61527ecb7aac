"""The ``timbre`` parser: building it (and ``timbre --help``, ``timbre say --help``) imports no
subcommand stack, yet every subcommand parses as its own module defines it."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from realtime.cli import SUBCOMMANDS, build_parser, subcommand_parser

HEAVY = ("torch", "scipy", "onnxruntime")

_PROBE = """
import json, sys
from realtime.cli import build_parser
parser = build_parser()
parser.format_help()
argv = sys.argv[1:]
if argv:
    try:
        parser.parse_args(argv)
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after building the parser (and parsing ``argv``)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_building_the_parser_imports_no_heavy_module_nor_any_subcommand() -> None:
    modules = modules_after()
    assert heavy(modules) == []
    assert "realtime.cli" in modules
    assert not {sub.module for sub in SUBCOMMANDS.values()} & modules
    assert "aiohttp" not in modules  # only `serve` needs it, when it runs


def test_say_help_imports_only_the_say_parser() -> None:
    modules = modules_after("say", "--help")
    assert "realtime.say" in modules
    assert heavy(modules) == []
    assert "realtime.client" not in modules


def test_the_client_say_runs_on_loads_no_model_stack() -> None:
    """What a real ``timbre say`` imports to check its options and stream (the pitch range
    included: it lives in ``session.pitch``, not beside the pitch shifter)."""
    code = ("import json, sys; import realtime.say, realtime.client, realtime.native_query; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    assert heavy(set(json.loads(out.splitlines()[-1]))) == []


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, sub in SUBCOMMANDS.items():
        assert name in out and sub.help.split()[0] in out
    assert "serve" in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_line_is_the_one_the_module_registers(name: str) -> None:
    """The placeholder's help line (shown without importing the module) must not drift from the
    line the module's own ``add_parser`` gives."""
    scratch = argparse.ArgumentParser(prog="timbre").add_subparsers()
    importlib.import_module(SUBCOMMANDS[name].module).add_parser(scratch)
    helps = {action.dest: action.help for action in scratch._choices_actions}
    assert helps[name] == SUBCOMMANDS[name].help


def test_a_picked_subcommand_parses_with_its_real_parser() -> None:
    from realtime import say

    args = build_parser().parse_args(["say", "--text", "hi", "--pitch", "-2.5", "--speed", "1.25",
                                      "--language", "en"])
    assert args.func is say.main
    assert (args.text, args.pitch, args.speed, args.language) == ("hi", -2.5, 1.25, "en")
    args = build_parser().parse_args(["admin", "create-tenant", "--name", "acme"])
    assert (args.command, args.admin_command, args.name) == ("admin", "create-tenant", "acme")


def test_subcommand_usage_names_the_full_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert subcommand_parser(parser, "say").prog == "timbre say"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["say"])  # --text is required
    assert exit_.value.code == 2
    assert "usage: timbre say" in capsys.readouterr().err


def test_an_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["bogus"])
    assert exit_.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
