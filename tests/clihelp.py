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


def one_error(result, *fragments: str, code: int = 1) -> str:
    """The run failed as a user mistake should: exit ``code``, exactly one 'Error:' line on stderr
    holding every fragment, and no traceback. Returns that line."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [" ".join(line.split()) for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for f in fragments:
        assert " ".join(f.split()) in errors[0], (f, errors[0])
    return errors[0]


def fails(*args, code: int = 1, says: str = "") -> str:
    """Run ``vrec ARGS`` expecting one clean error (see one_error); returns the error line."""
    return one_error(vrec(*args, ok=False), *([says] if says else []), code=code)
