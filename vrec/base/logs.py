"""The library's log records as plain lines on stderr.

Library code never prints: it returns notes, or logs to ``logging.getLogger("vrec")`` what a person
should see while it works (a weights download starting, the ONNX text tower being exported, which
cluster nodes did the work). Importing vrec sends those records, INFO and above, to stderr as
plain lines, as the command line shows them; a program that wants them elsewhere or not at all
configures the ``vrec`` logger as usual (``logging.getLogger("vrec").setLevel(logging.WARNING)``,
or its own handlers: ``show_library_logs`` adds this one only where no handler is set).
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
    """Send the ``vrec`` logger's records of ``level`` and above to stderr, unless the program gave
    that logger handlers of its own (once per process)."""
    log = logging.getLogger("vrec")
    if log.handlers:
        return
    log.addHandler(StderrLines())
    log.setLevel(level)
    log.propagate = False
