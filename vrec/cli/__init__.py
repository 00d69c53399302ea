"""The ``vrec`` command line: a thin layer that parses arguments, calls the library and renders.

Library errors (VrecError) become one ``Error: ...`` line on stderr and exit status 1 (see
``common.VrecGroup``); anything else is a bug and keeps its traceback. Each module below
registers its commands on ``app``.
"""
from __future__ import annotations

from . import embed as _embed  # noqa: F401  (the order here is the order in --help)
from . import search as _search  # noqa: F401
from . import compare as _compare  # noqa: F401
from . import evaluate as _evaluate  # noqa: F401
from . import ab as _ab, cost as _cost  # noqa: F401  (vrec ab ..., vrec cost)
from . import tags as _tags  # noqa: F401
from . import models as _models  # noqa: F401
from . import serve as _serve  # noqa: F401  (vrec serve)
from .common import app, reflow_help

reflow_help(app)  # after every module above has registered its commands


def main() -> None:
    app()
