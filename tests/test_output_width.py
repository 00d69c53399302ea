"""No output ever truncates data: tables are whole on a pipe, and fit an 80-column terminal without '…'.

Three ways of looking: every table-printing command in-process at 80 columns against the same command
with room to spare (every number and interval must survive whole); real subprocesses whose stdout is a
pipe while COLUMNS=80 (rich used to assume 80 columns there and cut 'tiny-siglip' to 'tiny-…'); and a
real 80-column pseudo-terminal.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from clihelp import vrec
from conftest import SAMPLE, catalog_copy
from rich.console import Console, ConsoleDimensions

VREC = str(Path(sys.executable).with_name("vrec"))
MODELS = ("tiny-siglip", "tiny-cnn")
BOX = re.compile(r"[│┃┏┓┗┛┡┩└┘┌┐━─┳┻╇╈┼┬┴╋┣┫├┤═]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@pytest.fixture(scope="module")
def store(shared_tiny_store, tmp_path_factory) -> Path:
    """A copy of the tiny store of this module's own, indexed (for 'index --stats') and tagged."""
    dst = tmp_path_factory.mktemp("width") / "store"
    shutil.copytree(shared_tiny_store, dst)
    vrec("index", "--store", dst)
    return dst


# each command, and words its output must hold whole (headers, model names) besides every number
COMMANDS = {
    "index": (["index", "--stats"], ["model", "ef_construction", "recall@10", "size", "(=", "RAM)", "peak", "state"]),
    "search-text": (["search-text", "red tote bag", "--model", "tiny-siglip", "--k", "6", "--mode", "vector"],
                    ["score", "match", "title", "category", "colour", "price"]),
    "search-text hybrid": (["search-text", "red tote bag", "--model", "tiny-siglip", "--k", "6"],
                           ["score", "found", "by", "both", "title", "category", "colour", "price"]),
    "search-image": (["search-image", str(SAMPLE / "bags" / "bag-tote-red.jpg"), "--model", "tiny-cnn", "--k", "6"],
                     ["score", "title", "category", "colour", "price"]),
    "compare": (["compare", "--left", "tiny-cnn", "--right", "tiny-siglip", "--label", "category", "--sample", "2",
                 "-k", "4"], ["category", "score", "agreement@4", "items"]),
    "eval": (["eval", "--models", "tiny-siglip,tiny-cnn", "--label", "category", "--k", "1,10", "--bootstrap", "50"],
             ["task", "label", "metric", "precision@10", "recall@1", "img→img", "text→img", "zero-shot", "−"]),
    "tag": (["tag", "--model", "tiny-siglip", "--threshold", "0.01"], ["id", "title", "(probability)", "group", "items"]),
    "map": (["map", "--model", "tiny-siglip", "--label", "category"],
            ["name", "items", "mix", "price", "min", "median", "max", "representatives"]),
    "models": (["models"], ["name", "dim", "text", "size", "offline", "description", "effnet-lite0", "siglip-large",
                           "open_clip:ARCH[@TAG]"]),
}


def words(text: str) -> Counter:
    return Counter(BOX.sub(" ", text).split())


def whole(word: str, text: str) -> bool:
    """``word`` appears in ``text`` in one piece (not a fragment of a longer word, not split over lines)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", BOX.sub(" ", text)) is not None


def numbers(text: str) -> Counter:
    """Every word with a digit in it: values, intervals such as +0.087–+0.170, k in recall@10, counts."""
    return Counter({w: n for w, n in words(text).items() if re.search(r"\d", w)})


def run_at(width: int, args, monkeypatch) -> str:
    """The command's stdout and stderr, with the CLI's consoles as wide as a terminal of ``width`` columns."""
    with monkeypatch.context() as m:
        m.setattr(Console, "size", property(lambda self: ConsoleDimensions(width, 25)))
        r = vrec(*args)
    return r.stdout + r.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_every_table_fits_80_columns_without_losing_a_character(name, store, monkeypatch):
    args, expected = COMMANDS[name]
    monkeypatch.setenv("VREC_STORE", str(store))
    wide = run_at(400, args, monkeypatch)
    narrow = run_at(80, args, monkeypatch)
    for text in (wide, narrow):
        assert "…" not in text, text
    long = [line for line in narrow.splitlines() if len(line) > 80]
    assert not long, "lines wider than the terminal:\n" + "\n".join(long)
    for w in expected + ([] if name == "models" else [m for m in MODELS if m in wide]):
        assert whole(w, narrow), f"{w!r} is not whole at 80 columns:\n{narrow}"
    # every number, interval and model@k word of the roomy output is still there, whole
    missing = numbers(wide) - numbers(narrow)
    assert not missing, f"cut at 80 columns: {sorted(missing)}\n{narrow}"


def test_embed_summary_on_stderr_is_whole_at_80_columns(tmp_path, monkeypatch):
    photos = catalog_copy(tmp_path, 6)
    out = run_at(80, ["embed", photos, "--store", tmp_path / "s", "--model", "tiny-siglip", "--model", "tiny-cnn"],
                 monkeypatch)
    assert "…" not in out
    for header in ("model", "new", "changed", "removed", "unchanged", "skipped", "in store"):
        assert header in out
    for m in MODELS:
        assert re.search(rf"{m}\s+│\s+6\s+│\s+0\s+│\s+0\s+│\s+0\s+│\s+0\s+│\s+6\s+│", out), out


def piped(*args: str, store: Path, columns: int = 80) -> str:
    """``vrec ARGS`` as a real process whose stdout is a pipe, with COLUMNS set as a terminal would."""
    env = {**os.environ, "COLUMNS": str(columns), "VREC_STORE": str(store)}
    r = subprocess.run([VREC, *args], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_index_stats_on_a_pipe_is_printed_at_full_width(store):
    from vrec.store.index import stats
    from vrec.store.store import Store

    text = piped("index", "--stats", store=store)
    assert "…" not in text, text
    lines = text.splitlines()
    assert any(all(h in line for h in ("ef_construction", "recall@10", "size MB (= RAM)", "peak MB")) for line in lines), text
    for m in MODELS:
        s = stats(Store(store).model(m))
        # the whole row on one line: nothing wrapped for want of room
        assert any(f" {m} " in line and f" {s.recall_at_10:.3f} " in line and f" {s.ef_construction} " in line
                   and "fresh" in line for line in lines), text


def test_eval_on_a_pipe_keeps_model_names_and_intervals_whole(store):
    text = piped("eval", "--models", "tiny-siglip,tiny-cnn", "--label", "category", "--k", "5", "--bootstrap", "50",
                 store=store)
    assert "…" not in text, text
    assert any("tiny-siglip − tiny-cnn" in line for line in text.splitlines()), text
    interval = r"\d\.\d+–\d\.\d+"
    row = (rf"precision@5\s+│\s+\d\.\d{{3}} {interval}\s+│\s+\d\.\d{{3}} {interval}\s+│"
           rf"\s+[+-]\d\.\d{{3}} [+-]\d\.\d+–[+-]\d\.\d+\s+│")
    assert re.search(row, text), text


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="needs a POSIX pseudo-terminal")
def test_a_real_80_column_terminal_gets_every_value(store):
    """In a terminal of 80 columns the wide index table is narrowed or stacked, never cut."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    env.update(TERM="xterm", VREC_STORE=str(store))
    p = subprocess.Popen([VREC, "index", "--stats"], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert p.wait(timeout=600) == 0
    text = ANSI.sub("", b"".join(chunks).decode())
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    wide = piped("index", "--stats", store=store)
    missing = numbers(wide) - numbers(text)
    assert not missing, f"cut in an 80-column terminal: {sorted(missing)}\n{text}"
    for w in ("tiny-siglip", "tiny-cnn", "ef_construction", "recall@10", "fresh"):
        assert whole(w, text), text
