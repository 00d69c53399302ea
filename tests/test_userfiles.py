"""Files that are not files: every file option of every command, given a named pipe, /dev/zero, a
folder and a broken symbolic link, answers with one clear line -- never a hang, never a memory blow-up.

Each case runs the real ``vrec`` script in its own process, with a time limit (a hang fails the test
rather than stalling the suite) and an address-space limit of 4 GiB (reading /dev/zero whole would
run into it and die with a MemoryError traceback, which fails the test too).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from clihelp import fails, vrec
from conftest import SAMPLE, catalog_copy

from vrec.store.store import Store

VREC = str(Path(sys.executable).parent / "vrec")
MEMORY = 4 << 30
KINDS = ("fifo", "device", "folder", "broken")
SAYS = {"fifo": "is a named pipe", "device": "is a device", "folder": "is a folder",
        "broken": "is a broken symbolic link"}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run_vrec(args, cwd, timeout: float = 180, limit_memory: bool = True, stdout=subprocess.PIPE,
             ) -> subprocess.CompletedProcess:
    """``vrec ARGS`` in a process of its own; with ``limit_memory``, in at most MEMORY of address space
    (enough for every check before a model loads, not for torch and a tokenizer on top)."""
    return subprocess.run([VREC, *map(str, args)], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, preexec_fn=_limits if limit_memory else None)


def oddity(folder: Path, kind: str, suffix: str = "") -> Path:
    """A path of the given kind: a named pipe, a device, a folder or a broken symbolic link."""
    if kind == "device":
        return Path("/dev/zero")
    path = folder / f"{kind}{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(folder / "nowhere")
    return path


def one_clean_error(r: subprocess.CompletedProcess, said: str) -> str:
    assert "Traceback" not in r.stderr + r.stdout, (said, r.stderr[-3000:])
    assert r.returncode == 1, (said, r.returncode, r.stderr[-3000:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, (said, r.stderr[-3000:])
    return " ".join(errors[0].split())


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ab")
    (folder / "units.csv").write_text("unit\nu1\nu2\nu3\n")
    (folder / "events.csv").write_text("unit,arm,clicks\n" + "".join(f"u{i},{'ab'[i % 2]},{i % 3}\n"
                                                                     for i in range(40)))
    return folder


# --- the one opener ------------------------------------------------------------------------------

def test_the_opener_names_what_a_path_is_and_never_blocks(tmp_path):
    import socket

    from vrec.base.errors import CatalogError
    from vrec.base.userfiles import describe, open_file, read_text

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "ok.txt").write_text("fine")
    expected = {"pipe": "is a named pipe", "dir": "is a folder", "broken": "is a broken symbolic link",
                "loop": "is a symbolic link that points to itself", "sock": "is a socket",
                "missing": "does not exist", "/dev/zero": "is a device"}
    for name, says in expected.items():
        path = tmp_path / name
        assert describe(path) == says or describe(path).startswith(says), (name, describe(path))
        with pytest.raises(CatalogError, match=f"^Vocabulary '{path}' {says}"):
            open_file(path, "Vocabulary", "give a text file", CatalogError)
    sock.close()
    assert describe(tmp_path / "ok.txt") is None and read_text(tmp_path / "ok.txt", "x", "vocabulary") == "fine"


def test_a_file_over_its_size_cap_is_refused_before_it_is_read(tiny_store, tmp_path, monkeypatch):
    vocab = tmp_path / "big.txt"
    vocab.write_text("leather\n" * 300_000)  # 2.4 MB: under the 8 MB a vocabulary may hold
    monkeypatch.setenv("VREC_MAX_FILE_MB", "1")
    line = fails("tag", "-m", "tiny-siglip", "--vocab", vocab, "--store", tiny_store,
                 says="is 2 MB, more than the 1 MB a vocabulary file may hold")
    assert "VREC_MAX_FILE_MB=3" in line


# --- every option that reads a file -------------------------------------------------------------

# what -> (the command with X for the file; the wording per kind where it differs from SAYS: an empty
# folder is a fine catalog or store, a photo query may be an item id; None: that kind is not run)
READS = {
    "embed SRC": (["embed", "X", "-m", "tiny-cnn", "--store", "NEW"], {"folder": "No images found"}),
    "embed SRC (list file)": (["embed", "X.csv", "-m", "tiny-cnn", "--store", "NEW"],
                              {"folder": "No images found"}),  # a folder called x.csv is a catalog folder
    "embed --metadata": (["embed", "DRAWN", "-m", "tiny-cnn", "--store", "NEW", "--metadata", "X.csv"], {}),
    "embed --weights": (["embed", "DRAWN", "-m", "tiny-cnn", "--store", "NEW", "--weights", "X.pt"], {}),
    "embed --store": (["embed", "DRAWN", "-m", "tiny-cnn", "--store", "X"], {"folder": None}),  # None: not run
    "collection create --image": (["collection", "create", "c1", "--image", "X.jpg", "-m", "tiny-siglip", "--store",
                                   "STORE"], {}),
    "dupes --pairs": (["dupes", "-m", "tiny-cnn", "--store", "STORE", "--pairs", "X.csv"], {}),
    "adapt --pairs": (["adapt", "-m", "tiny-cnn", "--store", "STORE", "--pairs", "X.csv"], {}),
    "eval --query-photos": (["eval", "--models", "tiny-cnn", "--store", "STORE", "--bootstrap", "10", "--query-photos",
                             "X.csv"], {}),
    "search-text --weights": (["search-text", "red", "-m", "tiny-siglip", "--store", "STORE", "--weights", "X"], {}),
    "search-text --store": (["search-text", "red", "-m", "tiny-siglip", "--store", "X"], {"folder": "No vrec store"}),
    "search-image QUERY": (["search-image", "X.jpg", "-m", "tiny-siglip", "--store", "STORE"],
                           dict.fromkeys(KINDS, "neither an item id")),
    "search-image --weights": (["search-image", "PHOTO", "-m", "tiny-siglip", "--store", "STORE", "--weights", "X"],
                               {}),
    "compare ITEMS": (["compare", "X.jpg", "--left", "tiny-cnn", "--right", "tiny-siglip", "--store", "STORE"],
                      dict.fromkeys(KINDS, "neither an item id")),
    "eval --queries": (["eval", "--models", "tiny-siglip", "--queries", "X.csv", "--bootstrap", "10",
                        "--store", "STORE"], {}),
    "eval --interactions": (["eval", "--models", "tiny-cnn", "--interactions", "X.csv", "--bootstrap", "10",
                             "--store", "STORE"], {}),
    "cost --benchmarks": (["cost", "--images", "10", "--device", "cuda", "-m", "tiny-cnn", "--benchmarks", "X.json",
                           "--store", "STORE"], {}),
    "tag --vocab": (["tag", "-m", "tiny-siglip", "--vocab", "X.txt", "--store", "STORE"], {}),
    "map --vocab": (["map", "-m", "tiny-siglip", "--clusters", "3", "--vocab", "X.txt", "--store", "STORE"], {}),
    "ab assign UNITS": (["ab", "assign", "X.csv", "-e", "exp"], {}),
    "ab analyze EVENTS": (["ab", "analyze", "X.csv", "--metric", "clicks"], {}),
}


def _args(template, x: Path, tmp_path: Path, store: Path) -> list[str]:
    photo = sorted(SAMPLE.rglob("*.jpg"))[0]
    fill = {"DRAWN": str(SAMPLE), "STORE": str(store), "NEW": str(tmp_path / "new-store"), "PHOTO": str(photo)}
    return [str(x) if a.split(".")[0] == "X" else fill.get(a, a) for a in template]


def _sweep(template, tmp_path, store, suffix, kinds=KINDS, limit_memory=True):
    """Run the command once per kind of oddity, side by side (each in a folder of its own); returns
    {kind: (args, result)}."""
    xs = {kind: oddity(tmp_path, kind, suffix) for kind in kinds}
    args = {kind: _args(template, xs[kind], tmp_path / f"run-{kind}", store) for kind in kinds}
    for kind in kinds:
        (tmp_path / f"run-{kind}").mkdir()
    with ThreadPoolExecutor(len(kinds)) as pool:
        results = dict(zip(kinds, pool.map(lambda k: run_vrec(args[k], tmp_path / f"run-{k}",
                                                              limit_memory=limit_memory), kinds)))
    return {kind: (args[kind], results[kind]) for kind in kinds}


@pytest.mark.parametrize("option", list(READS))
def test_every_file_read_refuses_what_is_not_a_file(shared_tiny_store, tmp_path, option):
    template, wording = READS[option]
    suffix = next((Path(a).suffix for a in template if a.split(".")[0] == "X"), "")
    kinds = [k for k in KINDS if wording.get(k, "") is not None]
    for kind, (args, r) in _sweep(template, tmp_path, shared_tiny_store, suffix, kinds).items():
        line = one_clean_error(r, f"vrec {' '.join(args)}  [{kind}]")
        assert wording.get(kind, SAYS[kind]) in line, (args, kind, line)


def test_the_sweep_knows_every_option_that_reads_or_writes_a_file():
    """Every option whose help speaks of a file, a folder or a photo is in READS or WRITES (or said
    here why not), so a new file option cannot slip past the sweep."""
    import re
    import typing

    words = re.compile(r"\b(files?|folders?|photos?|page|reports?|log|csv|output)\b")
    found = set()

    def text_typed(command, p) -> bool:
        t = typing.get_type_hints(command.callback).get(p.name)
        while typing.get_args(t):  # Optional[List[str]] -> str
            t = next(a for a in typing.get_args(t) if a is not type(None))
        return t is str

    def walk(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group (typer may bundle its own Click: no isinstance)
                walk(command, prefix + (name,))
                continue
            for p in command.params:
                if words.search((getattr(p, "help", None) or "").lower()) and text_typed(command, p):
                    found.add(f"{' '.join(prefix + (name,))} {p.opts[0] if p.param_type_name == 'option' else p.name}")

    import typer

    from vrec.cli import app

    walk(typer.main.get_command(app))
    covered = {_key(k) for k in list(READS) + list(WRITES)} | NOT_FILES
    assert found <= covered, sorted(found - covered)


def _key(what: str) -> str:
    """'embed SRC (list file)' -> 'embed folder'; 'export OUT' -> 'export out_path': the names Click uses."""
    what = what.split(" (")[0]
    names = {"SRC": "folder", "QUERY": "query", "ITEMS": "items", "OUT": "out_path", "UNITS": "units",
             "EVENTS": "events"}
    head, _, last = what.rpartition(" ")
    return f"{head} {names.get(last, last)}"


# text options whose help mentions such words but that name no file
NOT_FILES = {"search-text --format", "search-image --format", "export --format", "cost --device",
             "eval --text-template", "embed --image-column", "eval --product-score", "search-text --product-score",
             "search-image --product-score", "serve --product-score", "dupes --format", "dupes --model",
             "dupes --scope", "eval --interaction-columns",
             "embed --cache"}  # a folder for photos behind URLs: tests/test_feed_embed.py refuses a file there
# --store is one Store class for every command: swept above through embed and search-text
NOT_FILES |= {f"{c} --store" for c in ("index", "search-image", "compare", "eval", "export", "neighbours", "cost",
                                       "tag", "map", "serve", "ab arms", "dupes", "adapt", "models")}
NOT_FILES |= {f"collection {c} --store" for c in ("list", "show", "create", "refresh", "delete", "export")}
# needs a saved collection; it writes through vrec.base.files as every output does (tests/test_collections.py)
NOT_FILES |= {"collection export path"}


# --- every option that writes a file ------------------------------------------------------------

WRITES = {
    "search-text --html": ["search-text", "red", "-m", "tiny-siglip", "--store", "STORE", "--html", "X.html"],
    "search-image --html": ["search-image", "bags/bag-tote-red", "-m", "tiny-siglip", "--store", "STORE",
                            "--html", "X.html"],
    "compare --html": ["compare", "--left", "tiny-cnn", "--right", "tiny-siglip", "--sample", "1", "--store", "STORE",
                       "--html", "X.html"],
    "eval --report": ["eval", "--models", "tiny-cnn", "--label", "category", "--bootstrap", "10", "--store", "STORE",
                      "--report", "X.html"],
    "export OUT": ["export", "X.csv", "-m", "tiny-cnn", "--store", "STORE"],
    "neighbours OUT": ["neighbours", "X.csv", "-m", "tiny-cnn", "--store", "STORE"],
    "tag --csv": ["tag", "-m", "tiny-siglip", "--store", "STORE", "--csv", "X.csv"],
    "map --csv": ["map", "-m", "tiny-siglip", "--clusters", "3", "--store", "STORE", "--csv", "X.csv"],
    "map --html": ["map", "-m", "tiny-siglip", "--clusters", "3", "--store", "STORE", "--html", "X.html"],
    "ab arms --out": ["ab", "arms", "--arms", "tiny-cnn,tiny-siglip", "--store", "STORE", "--out", "X.csv"],
    "ab assign --out": ["ab", "assign", "UNITS", "-e", "exp", "--out", "X.csv"],
    "ab analyze --report": ["ab", "analyze", "EVENTS", "--metric", "clicks", "--report", "X.html"],
}


@pytest.mark.parametrize("option", list(WRITES))
def test_every_file_written_refuses_what_cannot_be_replaced(tiny_store, tmp_path, option, events):
    """A pipe, a device or a folder where the output goes is one clear error (never replaced, never
    blocked on); through a broken symbolic link the file is written where the link points (the link
    stays, as with a shell's '>'), or the output is refused in one line."""
    template = [str(events / "units.csv") if a == "UNITS" else str(events / "events.csv") if a == "EVENTS" else a
                for a in WRITES[option]]
    suffix = next(Path(a).suffix for a in template if a.split(".")[0] == "X")
    # nothing is read here, so no memory limit: the commands load their models before writing
    for kind, (args, r) in _sweep(template, tmp_path, tiny_store, suffix, limit_memory=False).items():
        said = f"vrec {' '.join(args)}  [{kind}]"
        if kind == "broken" and r.returncode == 0:  # written through the link: it stays, its target is the file
            link = tmp_path / f"broken{suffix}"
            assert link.is_symlink() and link.resolve().is_file(), said
            continue
        line = one_clean_error(r, said)
        if kind in ("fifo", "folder"):  # /dev/zero may be refused for its name first (no .csv)
            assert SAYS[kind] in line, (said, line)


# --- a full disk, a file size limit, a read-only store: one line, nothing half-written -------------

@pytest.mark.parametrize("command", [
    ["search-text", "red", "-m", "tiny-siglip", "--store", "STORE", "--format", "json"],
    ["search-image", "bags/bag-tote-red", "-m", "tiny-cnn", "--store", "STORE", "--format", "csv"],
    ["export", "-", "-m", "tiny-cnn", "--store", "STORE"],
    ["ab", "assign", "UNITS", "-e", "exp"],
    ["ab", "plan", "--baseline", "0.04", "--mde", "0.004", "--format", "json"],
    ["models"],
], ids=lambda c: " ".join(c[:2]))
def test_stdout_on_a_full_disk_is_one_error_line(shared_tiny_store, events, tmp_path, command):
    args = [str(shared_tiny_store) if a == "STORE" else str(events / "units.csv") if a == "UNITS" else a
            for a in command]
    with open("/dev/full", "w") as full:
        r = run_vrec(args, tmp_path, limit_memory=False, stdout=full)
    r.stdout = ""
    line = one_clean_error(r, " ".join(args))
    assert "No space left on device" in line and "free some space" in line, line
    assert "Exception ignored" not in r.stderr, r.stderr


def _file_size_limit(limit: int):
    """A process that may write no file beyond ``limit`` bytes: a write past it fails with EFBIG, a
    real OS error (Python ignores SIGXFSZ, so the process is not killed)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def four_photos(tmp_path):
    """A catalog of 4 photos embedded with tiny-cnn: (catalog folder, store)."""
    photos = catalog_copy(tmp_path, n=4)
    r = run_vrec(["embed", photos, "-m", "tiny-cnn", "--store", tmp_path / "s", "-q"], tmp_path, limit_memory=False)
    assert r.returncode == 0, r.stderr
    return photos, tmp_path / "s"


def _more_photos(photos: Path) -> None:
    for f in sorted(SAMPLE.rglob("*.jpg")):
        target = photos / f.relative_to(SAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())


def test_embed_past_a_file_size_limit_keeps_the_store_as_it_was(four_photos, tmp_path):
    photos, store = four_photos
    _more_photos(photos)  # 60 photos: a new shard (32 x 96 floats, or more) is over 4 kB
    before = snapshot(store)
    r = subprocess.run([VREC, "embed", str(photos), "-m", "tiny-cnn", "--store", str(store)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(4096))
    line = one_clean_error(r, "embed under a 4 kB file size limit")
    assert "Cannot write" in line and "File too large" in line, line
    assert snapshot(store) == before  # nothing committed half; no temporary file left behind
    r = run_vrec(["search-image", "bags/bag-tote-red", "-m", "tiny-cnn", "--store", store], tmp_path,
                 limit_memory=False)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr  # still readable (the item may be new)
    assert len(Store(store).model("tiny-cnn")) == 4


def test_an_export_past_a_file_size_limit_leaves_the_old_file_whole(shared_tiny_store, tmp_path):
    out = tmp_path / "vectors.csv"
    out.write_text("the previous export\n")
    r = subprocess.run([VREC, "export", str(out), "-m", "tiny-cnn", "--store", str(shared_tiny_store)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(16_000))
    line = one_clean_error(r, "export under a 16 kB file size limit")
    assert f"Cannot write '{out}'" in line and "File too large" in line, line
    assert out.read_text() == "the previous export\n" and sorted(p.name for p in tmp_path.iterdir()) == ["vectors.csv"]


@pytest.fixture
def full_disk(tmp_path):
    """A small tmpfs (mounting needs root: skipped where that is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_embed_on_a_full_disk_keeps_the_store_and_says_so(full_disk, tmp_path):
    photos = catalog_copy(tmp_path, n=4)
    store = full_disk / "store"
    r = run_vrec(["embed", photos, "-m", "tiny-cnn", "--store", store, "-q"], tmp_path, limit_memory=False)
    assert r.returncode == 0, r.stderr
    with open(full_disk / "filler", "wb", buffering=0) as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    _more_photos(photos)
    before = snapshot(store)
    r = run_vrec(["embed", photos, "-m", "tiny-cnn", "--store", store], tmp_path, limit_memory=False)
    line = one_clean_error(r, "embed on a full disk")
    assert "No space left on device" in line and "free some space" in line, line
    assert snapshot(store) == before


def test_cost_on_a_read_only_store_still_gives_its_estimate(four_photos, tmp_path):
    _, store = four_photos
    ro = tmp_path / "read-only"
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(store), str(ro)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount read-only here ({r.stderr.strip() or 'not root'})")
    try:
        if os.access(ro, os.W_OK) and not _read_only(ro):
            pytest.skip("the bind mount is writable here")
        r = vrec("cost", "--images", "1000", "-m", "tiny-cnn", "--calibrate", "4", "--store", ro, "--format", "json")
        est = json.loads(r.stdout)
        assert "not kept" in r.stdout and est["models"][0]["figures"], r.stdout
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def _read_only(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False
