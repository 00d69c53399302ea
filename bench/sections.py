"""Marked sections of BENCHMARKS.md, each rewritten by the bench script that owns it.

bench/cold_query.py and bench/serve_bench.py each keep their figures between two HTML comment
markers (``<!-- NAME: start -->`` ... ``<!-- NAME: end -->``, or ``begin`` for ``start``), so a run
replaces only its own section and leaves the rest of the file as it was. bench/run.py writes the
rest of the document whole, and carries the marked sections over (:func:`write_keeping_sections`),
so a ``make bench`` does not drop another script's figures.

Every write takes a lock on the file's folder, so two scripts finishing at the same moment do
not each read the old file and the second drop the first's section.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

# A marked section: the start marker, anything, the end marker with the same NAME.
MARKED = re.compile(r"<!--\s*(?P<name>[^>]*?):\s*(?:start|begin)\s*-->.*?<!--\s*(?P=name):\s*end\s*-->", re.S)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock (flock on the folder) for a read-modify-write of ``path``."""
    try:
        import fcntl
        import os
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(path: Path, text: str) -> None:
    from vrec.base.files import atomic_path
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _insert(text: str, section: str) -> str:
    """``text`` with ``section`` before its notes, or at its end."""
    if "\n## Notes" in text:
        i = text.index("\n## Notes")
        return text[:i] + "\n" + section + "\n" + text[i:]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def marked_sections(text: str) -> list[str]:
    """The marked sections of a document, markers included, in their order."""
    return [m.group(0) for m in MARKED.finditer(text)]


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the marked
    one, or before the notes, or at the end; the file is written atomically."""
    path = Path(path)
    with _locked(path):
        text = path.read_text() if path.is_file() else ""
        if start in text and end in text:
            text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
        else:
            text = _insert(text, section)
        _write(path, text)


def write_keeping_sections(path: Path, text: str) -> None:
    """Write the document ``text`` to ``path`` whole, except that the marked sections the file
    already holds (other scripts' figures) are kept: each goes before the new text's notes, in
    the order the file had them, unless ``text`` has a section of the same start marker itself."""
    path = Path(path)
    with _locked(path):
        old = path.read_text() if path.is_file() else ""
        for section in marked_sections(old):
            start = section[:section.index("-->") + 3]
            if start not in text:
                text = _insert(text, section)
        _write(path, text)


def write_section(path: Path, start: str, end: str, title: str, body: str) -> None:
    """A bench script's section (its title and body) between its markers, in place of the earlier one."""
    replace_section(path, start, end, f"{start}\n{title}\n\n{body}\n{end}")


def publish(result, body: str, write: bool, start: str, end: str, title: str) -> None:
    """What a standalone bench script ends with: its Markdown section on stdout (and, with ``write``,
    in BENCHMARKS.md between its markers), then its raw figures as a JSON block."""
    import json

    print(body)
    if write:
        write_section(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", start, end, title, body)
    print("```json\n" + json.dumps(result, indent=1) + "\n```")
