"""The library's log records as plain lines on stderr.

Library code never prints: it returns notes, or logs to ``logging.getLogger("vrec")`` what a person
should see while it works (a download starting, which cluster nodes did the work). On the command
line those records are printed as they are, one line each on stderr, where progress and notes go.
"""
from __future__ import annotations

import logging
import sys


class StderrLines(logging.Handler):
    """Each record's message as one line on whatever ``sys.stderr`` is when it is emitted (so a test
    runner that swaps stderr sees it too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or full: nothing more can be said
            pass


def show_library_logs(level: int = logging.INFO) -> None:
    """Send the ``vrec`` logger's records of ``level`` and above to stderr (once per process)."""
    log = logging.getLogger("vrec")
    if not any(isinstance(h, StderrLines) for h in log.handlers):
        log.addHandler(StderrLines())
    log.setLevel(level)
    log.propagate = False
