"""The ``parsl-lite`` command.

``parsl-lite config FILE`` checks a config file and prints what it builds.

``parsl-lite run [--config FILE] SCRIPT [--config FILE] [--] [ARGS...]`` runs a
workflow script as ``python SCRIPT ARGS...`` would, with parsl_lite ready:

- ``--config`` goes before the script or right after it; the first other
  word after the script (or ``--``) starts the script's own arguments, so
  ``run wf.py --config c.toml -n 3`` gives the script ``-n 3`` and
  ``run wf.py -- --config x`` gives it ``--config x``.
- With ``--config``, that config wins: the script's own ``parsl_lite.load(...)``
  loads it instead of what it was passed (a warning says so). Without it, the
  script's ``load`` works as usual. A script that never calls ``load`` gets
  the config (or the default, ``Config()``) at its first app call.
- Exit status: the script's ``sys.exit(n)`` gives n; an exception, its
  traceback and 1; a missing script or a bad config file, a message and 2;
  SIGTERM, 143 after the kernel's cleanup. Whatever kernel is still loaded when
  the script ends is cleaned up.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from typing import Optional, Sequence

from parsl_lite import __version__

_RUN_USAGE = "parsl-lite run [--config FILE] SCRIPT [--config FILE] [--] [ARGS...]"


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


class _UsageError(Exception):
    pass


def split_run_arguments(words: Sequence[str]) -> tuple[Optional[str], str, list[str]]:
    """Split ``run``'s words into (config, script, script arguments) (see the module docstring).

    Raises:
        _UsageError: no script, ``--config`` without a value or given twice, an unknown option.
    """
    config: Optional[str] = None
    script: Optional[str] = None
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--config" or word.startswith("--config="):
            if config is not None:
                raise _UsageError("--config given twice")
            if word == "--config":
                if not rest:
                    raise _UsageError("--config needs a file")
                config = rest.pop(0)
            else:
                config = word.split("=", 1)[1]
        elif word == "--":
            if script is None:
                if not rest:
                    raise _UsageError("no script given")
                script = rest.pop(0)
            return config, script, rest
        elif script is None:
            if word.startswith("-"):
                raise _UsageError(f"unknown option {word!r} before the script")
            script = word
        else:
            return config, script, [word, *rest]
    if script is None:
        raise _UsageError("no script given")
    return config, script, []


def _run(words: Sequence[str]) -> int:
    from parsl_lite.config_loader import load_config
    from parsl_lite.dataflow.loader import DataFlowKernelLoader
    from parsl_lite.errors import ConfigurationError

    try:
        config_source, script, script_args = split_run_arguments(words)
    except _UsageError as exc:
        print(f"usage: {_RUN_USAGE}\nparsl-lite run: error: {exc}", file=sys.stderr)
        return 2
    if not os.path.isfile(script):
        reason = "is not a file" if os.path.exists(script) else "no such file"
        print(f"parsl-lite run: error: cannot run {script!r}: {reason} (in {os.getcwd()})", file=sys.stderr)
        return 2
    prepared = None
    if config_source is not None:
        try:
            prepared = load_config(config_source)  # checked now, before the script starts
        except ConfigurationError as exc:
            print(f"parsl-lite run: error: {exc}", file=sys.stderr)
            return 2
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` does
    with DataFlowKernelLoader.script_session(config_source, prepared):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            return _exit_status(exc)
        except Exception as exc:
            _print_script_traceback(exc, script)
            return 1
    return 0


def _exit_status(exc: SystemExit) -> int:
    """What ``python SCRIPT`` would exit with for this ``SystemExit``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _print_script_traceback(exc: BaseException, script: str) -> None:
    """The traceback from the script's own frames on, without the CLI's and runpy's."""
    tb = exc.__traceback__
    target = os.path.abspath(script)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != target:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)


def main(argv: Optional[Sequence[str]] = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="parsl-lite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"parsl_lite {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("config", help="check a config file and print what it builds")
    check.add_argument("file")
    check.set_defaults(handler=_config)
    from parsl_lite.faas.endpoint.cli import add_endpoint_commands
    from parsl_lite.faas.service.cli import add_service_commands
    add_service_commands(commands)     # parsl-lite service start|stop|status|add-user
    add_endpoint_commands(commands)    # parsl-lite endpoint configure|start|stop|restart|list|status|delete
    from parsl_lite.messaging.cli import add_broker_commands; add_broker_commands(commands)  # broker start|stop|status
    from parsl_lite.monitoring.cli import add_monitoring_commands; add_monitoring_commands(commands)  # status|monitor|report
    run = commands.add_parser("run", help="run a workflow script (see `parsl-lite run -h`)", usage=_RUN_USAGE,
                              description=__doc__.split("\n\n", 2)[2],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    if words[:1] == ["run"]:  # parsed by hand: argparse cannot leave the script's own options alone
        if words[1:2] in (["-h"], ["--help"]):
            run.print_help()
            return 0
        return _run(words[1:])
    args = parser.parse_args(words)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
