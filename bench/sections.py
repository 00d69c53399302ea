"""One marked section of BENCHMARKS.md, rewritten by the bench script that owns it.

bench/cold_query.py and bench/serve_bench.py each keep their figures between two HTML comment
markers, so a run replaces only its own section and leaves the rest of the file as it was.
"""
from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the marked
    one, or before the notes, or at the end; the file is written atomically."""
    from vrec.store import atomic_path

    text = path.read_text() if path.is_file() else ""
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    elif "\n## Notes" in text:
        i = text.index("\n## Notes")
        text = text[:i] + "\n" + section + "\n" + text[i:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
