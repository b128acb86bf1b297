"""structlog setup: JSON lines on stderr, one per event, with ISO timestamps."""

from __future__ import annotations

import logging
import sys

import structlog


def setup(*, json: bool = True, level: int = logging.INFO) -> None:
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # APScheduler logs every coalesced or skipped run at WARNING through stdlib logging;
    # our own log lines say what matters.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
