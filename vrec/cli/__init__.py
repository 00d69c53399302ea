"""The ``vrec`` command line: a thin layer that parses arguments, calls the library and renders.

Library errors (VrecError) become one ``Error: ...`` line on stderr and exit status 1 (see
``common.VrecGroup``); anything else is a bug and keeps its traceback. Each module below
registers its commands on ``app``.
"""
from __future__ import annotations

import sys

# the order of these imports is the order of the commands in --help
# isort: off
from vrec.cli import embed as _embed  # noqa: F401  (the order here is the order in --help)
from vrec.cli import search as _search  # noqa: F401
from vrec.cli import compare as _compare  # noqa: F401
from vrec.cli import evaluate as _evaluate  # noqa: F401
from vrec.cli import adapt as _adapt  # noqa: F401  (vrec adapt, after eval)
from vrec.cli import dupes as _dupes  # noqa: F401  (vrec dupes, after neighbours)
from vrec.cli import ab as _ab, cost as _cost  # noqa: F401  (vrec ab ..., vrec cost)
from vrec.cli import tags as _tags  # noqa: F401
from vrec.cli import collections as _collections  # noqa: F401  (vrec collection ...)
from vrec.cli import models as _models  # noqa: F401
from vrec.cli import serve as _serve  # noqa: F401  (vrec serve)
from vrec.cli import common
from vrec.cli.common import app, reflow_help
# isort: on

reflow_help(app)  # after every module above has registered its commands


def main() -> None:
    """Run the command line in this process (tests and scripts call this; it returns by SystemExit)."""
    app()


def run() -> None:
    """The ``vrec`` console script: ``main()``, then, after a command that asked for it (the query
    commands, which people run cold and often), an exit that skips the interpreter's teardown:
    freeing pandas, pyarrow and onnxruntime objects one by one costs ~0.15 s for nothing."""
    try:
        main()
    except SystemExit as e:
        if e.code:  # a failure keeps its status and the ordinary exit
            raise
        if common.quick_exit_requested:
            common.exit_now()
        sys.exit(common.flush_output())  # a closed pipe: status 1, no "Exception ignored" at exit
