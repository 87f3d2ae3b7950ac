"""Log handlers for the ``parsl_lite`` logger. Never touches the root logger."""
from __future__ import annotations

import logging
from typing import Optional

DEFAULT_FORMAT = ("%(asctime)s.%(msecs)03d %(name)s:%(lineno)d %(processName)s(%(process)d) "
                  "%(threadName)s %(levelname)s: %(message)s")


def set_file_logger(filename: str, name: str = "parsl_lite", level: int = logging.INFO,
                    format_string: Optional[str] = None) -> logging.Handler:
    """Send ``name``'s records at ``level`` and above to ``filename``; return the handler."""
    logger = logging.getLogger(name)
    logger.setLevel(min(level, logger.level or level))
    handler = logging.FileHandler(filename)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(format_string or DEFAULT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return handler


def set_stream_logger(name: str = "parsl_lite", level: int = logging.DEBUG,
                      format_string: Optional[str] = None) -> logging.Handler:
    """Send ``name``'s records to stderr (interactive debugging)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(format_string or DEFAULT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler, name: str = "parsl_lite") -> None:
    """Detach and close a handler added by the functions above."""
    logging.getLogger(name).removeHandler(handler)
    handler.close()
