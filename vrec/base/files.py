"""Writing and reading files safely: every file vrec writes goes to a temporary name beside its
target and is renamed over it only when complete (a crash leaves the old file whole)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vrec.base.errors import StoreError
from vrec.base.userfiles import describe, write_error

STDOUT_REFUSED = "Writing to stdout ('-') is not possible here; give a file name (./- for a file named '-')."


def folder_name(text: str) -> str:
    """``text`` with what a folder name should not hold replaced by '_' (model names as store folders)."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --- atomic files -----------------------------------------------------------------------------

def _umask() -> int:
    """The process umask (read without changing it for good: set and restore at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Every file vrec writes (store files, exports, pages, reports) goes through here, so this is
    where an unusable output path becomes one clear StoreError rather than a traceback, and where
    the file gets the permissions the umask asks for (mkstemp alone would make it 0600, which
    other users and web servers cannot read).
    """
    if str(path) == "-":  # a user's '-' means stdout, never a file of that name
        raise StoreError(STDOUT_REFUSED)
    path = Path(path)
    if path.is_symlink():  # written through the link, as a shell's '>' does; a link to itself is no file
        if describe(path) and "itself" in describe(path):
            raise StoreError(f"{str(path)!r} {describe(path)}; give the name of a file to write to.")
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise StoreError(f"{str(path)!r} is a folder; give a file name to write to (e.g. {str(path / 'out')!r}).")
    if path.exists() and not path.is_file():  # /dev/null, a pipe, a socket: never replace those
        raise StoreError(f"{str(path)!r} {describe(path)}; give the name of a file to write to.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StoreError(write_error(e, path) or f"Cannot write {str(path)!r} ({e.strerror or e}); "
                         "choose a writable location.") from None
    os.close(fd)
    try:
        try:
            yield tmp
        except OSError as e:  # a full disk, a file size limit, an I/O error: the old file stays whole
            message = write_error(e, path)
            if message is None:
                raise
            raise StoreError(message) from None
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise StoreError(f"Cannot write {str(path)!r} ({e.strerror or e}); choose a writable location.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(_WriteOnly(f), array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())


class _WriteOnly:
    """A file seen through ``write`` alone: numpy then writes in chunks through Python, so a full
    disk or a size limit raises an OSError with its errno (numpy's own ``tofile`` reports only
    'N requested and M written')."""

    def __init__(self, f):
        self.write = f.write


def write_parquet(path: str | os.PathLike, df, row_group_size: int | None = None) -> None:
    """``df`` as a parquet file (no index); ``row_group_size``: rows per row group, so that a reader
    can read a few rows without decoding the whole file (see vrec.store.catalog_rows)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, row_group_size=row_group_size)
        with open(tmp, "rb") as f:  # on disk before the rename, as write_json and write_npy are
            os.fsync(f.fileno())


def read_parquet_rows(path: str | os.PathLike, positions, columns: list[str] | None = None):
    """Rows of a parquet file by position, in the order given (repeats allowed), as a DataFrame
    converted as ``pandas.read_parquet`` converts: only the row groups holding them are decoded."""
    import numpy as np
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    sizes = np.array([f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)], np.int64)
    starts = np.r_[0, np.cumsum(sizes)]
    positions = np.asarray(positions, np.int64)
    group_of = np.searchsorted(starts, positions, side="right") - 1
    groups = np.unique(group_of)
    table = f.read_row_groups(groups.tolist(), columns=columns)
    # where each wanted row is in ``table``, the row groups read one after the other
    read_starts = np.r_[0, np.cumsum(sizes[groups])]
    at = np.searchsorted(groups, group_of)
    return table.take(read_starts[at] + positions - starts[group_of]).to_pandas()


def read_json(path: str | os.PathLike) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise StoreError(f"{str(path)!r} is damaged ({e}); restore it or delete the store and embed again.") from None
