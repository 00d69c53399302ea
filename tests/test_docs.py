"""The documentation stays true to the code: docs/commands.md is the CLI's own --help, with every
command; every relative link in README.md and docs/*.md leads to a file (and heading) that exists;
every docs page is reachable from the README; the README stays short."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "commands.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def prose_lines(path: Path):
    """The lines of a Markdown file outside fenced code blocks, inline code removed."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", "", line)


def anchors(path: Path):
    """The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to
    hyphens, '-1', '-2'... for repeats)."""
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))  # a link in a heading: its text
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            yield slug if n == 0 else f"{slug}-{n}"


def broken_links(page: Path) -> list[str]:
    broken = []
    for line in prose_lines(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            path, _, fragment = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in set(anchors(dest)):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def cli_commands() -> list[str]:
    """Every command and subcommand of the vrec CLI, walked from its Click group."""
    import typer

    from vrec.cli import app

    def walk(cmd, path):
        yield " ".join(path)
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd, info_name=path[-1])
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, path + [name])

    return list(walk(typer.main.get_command(app), ["vrec"]))


def test_readme_is_at_most_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 200, f"README.md has {n} lines; move the details to a page in docs/"


def test_relative_links_lead_to_existing_files_and_headings():
    assert len(PAGES) > 5, "docs/*.md pages are missing"
    broken = [b for page in PAGES for b in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve()
              for line in prose_lines(README) for t in LINK.findall(line)}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def test_every_command_has_its_help_in_the_reference():
    text = REFERENCE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### (vrec\b.*)$", text, re.M))
    commands = cli_commands()
    assert len(commands) > 10
    missing = [c for c in commands if c not in documented]
    assert not missing, f"commands missing from docs/commands.md (run make docs): {missing}"
    for c in commands:
        assert f"Usage: {c} " in text, f"docs/commands.md lacks the --help of {c!r} (run make docs)"


def test_reference_is_up_to_date_with_the_help():
    done = subprocess.run([sys.executable, "-m", "cogapp", "--check", str(REFERENCE.relative_to(ROOT))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, ("docs/commands.md is out of date with the CLI's --help: run make docs\n"
                                  + done.stdout + done.stderr)


def test_reference_has_no_terminal_codes_and_no_trailing_spaces():
    text = REFERENCE.read_text(encoding="utf-8")
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if line != line.rstrip()]
