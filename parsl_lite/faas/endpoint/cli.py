"""``parsl-lite endpoint ...``: configure, start, stop and list endpoints of the function service.

Only argparse at import time: ``parsl-lite --help`` must stay fast.
"""
from __future__ import annotations

import argparse
from typing import Any


def add_endpoint_commands(commands: Any) -> None:
    endpoint = commands.add_parser("endpoint", help="endpoints of the function service "
                                                    "(configure, start, stop, restart, list, status, delete)")
    sub = endpoint.add_subparsers(dest="endpoint_command", required=True)
    del sub  # filled in by the endpoint's commands
