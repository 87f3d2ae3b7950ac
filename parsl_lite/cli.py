"""The ``parsl-lite`` command.

``parsl-lite config FILE`` checks a config file and prints what it builds;
``parsl-lite run SCRIPT [--config FILE]`` runs a workflow script with a config
loaded first (so a script written for ``parsl_lite.dfk()`` needs no ``load``).
"""
from __future__ import annotations

import argparse
import runpy
import sys
from typing import Optional, Sequence

from parsl_lite import __version__


def _config(args: argparse.Namespace) -> int:
    from parsl_lite.config_loader import load_config
    from parsl_lite.errors import ConfigurationError

    try:
        config = load_config(args.file)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(repr(config))
    return 0


def _run(args: argparse.Namespace) -> int:
    import parsl_lite

    sys.argv = [args.script, *args.script_args]
    with parsl_lite.load(args.config):
        runpy.run_path(args.script, run_name="__main__")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="parsl-lite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"parsl_lite {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("config", help="check a config file and print what it builds")
    check.add_argument("file")
    check.set_defaults(handler=_config)
    run = commands.add_parser("run", help="run a workflow script with a config loaded")
    run.add_argument("script")
    run.add_argument("--config", default=None, help="a .toml or .py config (default: the local config)")
    run.add_argument("script_args", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
