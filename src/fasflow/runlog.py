"""Logging for workflow steps: progress to the console and to the rule's log file.

`run_logged(main, log_path)` is how every step runs: whatever fails, the log file says why —
a FasflowError (bad input or configuration) as one clear line and exit code 2, any other
exception with its full traceback and exit code 1.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

from .errors import FasflowError

LOGGER_NAME = "fasflow"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.propagate = False
    # Warnings of libraries (torch, onnxruntime, optuna) reach the log file too.
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers = handlers[1:]
    return logger


def run_logged(main: Callable[[], object], log_path: str | Path | None = None) -> None:
    """Run a workflow step with its log; any failure is logged and ends the process non-zero."""
    logger = setup_logging(log_path)
    try:
        main()
    except FasflowError as exc:
        logger.error("%s", exc)
        sys.exit(2)
    except Exception:
        logger.exception("step failed with an unexpected error:")
        sys.exit(1)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def current_log_file() -> Path | None:
    """The file the step logs to (None outside a workflow step)."""
    for handler in get_logger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None
