"""``parsl-lite service ...``: start, stop and inspect the local function service.

Only argparse at import time: ``parsl-lite --help`` must stay fast.
"""
from __future__ import annotations

import argparse
from typing import Any


def add_service_commands(commands: Any) -> None:
    service = commands.add_parser("service", help="the function service (start, stop, status, add-user)")
    sub = service.add_subparsers(dest="service_command", required=True)
    del sub  # filled in by the service's commands
