"""Running the CLI in-process, as a user would type it."""
from __future__ import annotations

from typer.testing import CliRunner

from vrec.cli import app


def vrec(*args: str, ok: bool = True):
    """Invoke ``vrec ARGS``; with ok=True, fail the test on a non-zero exit, showing the output."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"vrec {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}\n{result.stderr}"
    return result
