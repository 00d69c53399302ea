"""Shared pieces of the CLI: the app, consoles, and options used by several commands."""
from __future__ import annotations

import sys
import time

START = time.perf_counter()  # when the CLI module was imported: for --timings
quick_exit_requested = False  # see request_quick_exit


def request_quick_exit() -> None:
    """Let the console script end this run with ``os._exit`` once it succeeds (see ``vrec.cli.run``).

    Only for commands that leave nothing to clean up at exit: no child processes, no Ray, no
    temporary files removed by atexit handlers."""
    global quick_exit_requested
    quick_exit_requested = True


def flush_output() -> int:
    """Flush stdout and stderr; returns the exit status to end with: 0, or 1 when the reader of
    stdout went away early (``vrec ... --format json | head``). That reader wanted no more, so
    nothing is said about it: the rest goes to /dev/null, as Click does when it happens mid-command."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        silence_stdout()
        return 1
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return 0


def silence_stdout() -> None:
    """Send stdout to /dev/null from now on: its reader went away, or its disk is full, and what is
    still buffered would otherwise fail again at exit ("Exception ignored ...")."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):  # no real descriptor (a test's captured output): nothing to keep
        pass


def exit_now() -> None:
    """End the process at once, skipping the interpreter's teardown (output is flushed first)."""
    import os

    os._exit(flush_output())


import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from typer.core import TyperGroup

from vrec.base import __version__

HELP = """Visual recommendations from SigLIP vision-language embeddings.

Embed a folder of product photos, index it, search it by text or by photo, and see what a CNN
and SigLIP each consider "similar". Typical session:

[bold]vrec embed ./images --metadata products.csv[/bold]  (SigLIP + CNN vectors into ./.vrec)

[bold]vrec index[/bold]  (HNSW index with measured recall)

[bold]vrec search-text "minimalist leather tote"[/bold]

[bold]vrec search-image photo.jpg[/bold]

[bold]vrec compare --label category[/bold]

Then: vrec eval (evidence on labelled data), vrec export / neighbours (for recommenders), vrec tag
and vrec map (zero-shot tags, style clusters, assortment gaps). Every command has --help.
"""

# On a terminal rich fits what it prints to the terminal's width. On a pipe or a file it would assume 80
# columns (or $COLUMNS); give it room instead, so lines and tables come out whole, at their natural width.
PIPE_WIDTH = 100_000
out = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)  # results: stdout
err = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)  # progress, notes and warnings: stderr


class VrecGroup(TyperGroup):
    """One way to report every mistake: a single 'Error: ...' line on stderr, no traceback.

    Library errors (VrecError) exit with status 1. Usage errors that Click finds while parsing
    (an unknown option, '--k abc', a missing argument) exit with status 2, as Click's do, but are
    printed the same plain way plus a pointer to --help, instead of a box.
    """

    def invoke(self, ctx):
        from vrec.base.errors import VrecError
        from vrec.base.userfiles import write_error

        try:
            rv = super().invoke(ctx)
            sys.stdout.flush()  # a full disk behind stdout fails here, inside the command, not at exit
            return rv
        except VrecError as e:
            self._error(ctx, str(e))
        except OSError as e:  # writing a file or stdout: a full disk, a read-only place, an I/O error
            message = write_error(e, writing=False)
            if message is None:
                raise  # not about the place written to: a bug, with its traceback
            if e.filename is None:  # stdout itself: what is still buffered can never be written
                silence_stdout()
            self._error(ctx, message)

    @staticmethod
    def _error(ctx, message: str) -> None:
        err.print(f"[bold red]Error:[/bold red] {rich_escape(message)}", highlight=False, soft_wrap=True)
        ctx.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import sys

        # typer may bundle its own copy of Click: take its exception classes from typer itself
        click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_error as e:
            err.print(f"[bold red]Error:[/bold red] {rich_escape(e.format_message())}", highlight=False,
                      soft_wrap=True)
            ctx = getattr(e, "ctx", None)
            if ctx is not None:
                err.print(f"Try '{ctx.command_path} --help'.", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("Aborted.")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=VrecGroup, help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        print(f"vrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


StoreOpt = typer.Option(None, "--store", envvar="VREC_STORE", show_envvar=True,
                        help="Store folder \\[default: ./.vrec].")
WeightsOpt = typer.Option(None, "--weights", help="Local weights file (safetensors or PyTorch state dict) for the model.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or mps.")
FilterOpt = typer.Option(None, "--filter", "-f", help="Metadata filter such as category=bags, price<200, "
                         "'colour in (red,black)' or tag:minimalist; repeat to combine.")
FormatOpt = typer.Option("table", "--format", help="table, json or csv (a cell a spreadsheet would run as a formula, "
                         "such as =HYPERLINK(...), gets a leading '; VREC_CSV_RAW=1 writes cells as they are).")
ProductScoreOpt = typer.Option(None, "--product-score", help="For products of several photos: mean (the mean of "
                               "their photos, the default), max (their best photo) or main (their main photo only).")
CollapseOpt = typer.Option(None, "--collapse", help="Keep one result (the best) per value of this column, e.g. "
                           "item_group_id: one variant of each product line.")
FormatTableJsonOpt = typer.Option("table", "--format", help="table or json.")  # commands without a CSV form


def print_notes(notes) -> None:
    """Each note on stderr as a yellow 'Note:' line; the text is escaped, so brackets in it print as written."""
    for n in notes:
        err.print(f"[yellow]Note:[/yellow] {rich_escape(n)}", highlight=False)


def reflow_help(typer_app: typer.Typer) -> None:
    """Join the lines of each help paragraph, so --help wraps prose to the terminal's width.

    Typer's rich help keeps a docstring's own line breaks, which at 80 columns cut sentences in
    two ("pair, not a" / "softmax ..."); a blank line still separates paragraphs.
    """
    import inspect
    import re

    def reflow(text: str) -> str:
        paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
        return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)

    infos = list(typer_app.registered_commands) + [typer_app.registered_callback] + [
        g for g in typer_app.registered_groups]
    for info in infos:
        if info is None:
            continue
        if getattr(info, "help", None) and isinstance(info.help, str):
            info.help = reflow(info.help)
        cb = getattr(info, "callback", None)
        if cb is not None and cb.__doc__:
            cb.__doc__ = reflow(cb.__doc__)
        sub = getattr(info, "typer_instance", None)
        if isinstance(sub, typer.Typer):
            reflow_help(sub)
    if isinstance(getattr(typer_app.info, "help", None), str):
        typer_app.info.help = reflow(typer_app.info.help)


def check_format(fmt: str, allowed=("table", "json", "csv")) -> str:
    from vrec.base.errors import VrecError

    if fmt not in allowed:
        raise VrecError(f"Unknown --format {fmt!r}; use one of: {', '.join(allowed)}.")
    return fmt
