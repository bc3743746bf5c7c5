"""Logging for workflow steps: progress to the console and to the rule's log file."""

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
    logger.handlers.clear()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def run_step(main: Callable[[], object], log_path: str | Path | None = None) -> None:
    """Run a workflow step; a FasflowError becomes one clear line and exit code 2."""
    logger = setup_logging(log_path)
    try:
        main()
    except FasflowError as exc:
        logger.error("%s", exc)
        sys.exit(2)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
