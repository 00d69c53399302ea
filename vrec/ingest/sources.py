"""Which source a catalog argument names: a folder, a URI, a list of photo paths, or a product feed."""
from __future__ import annotations

import os
from pathlib import Path

from vrec.base.errors import CatalogError
from vrec.base.userfiles import describe, open_file
from vrec.ingest.catalog import LIST_SUFFIXES, FileSystemSource, FolderSource, ListSource, NotAList, Source
from vrec.ingest.feed_source import FeedOptions, FeedSource
from vrec.ingest.feeds import is_feed_file
from vrec.ingest.metadata import FILE_COLUMNS, separator


def open_source(src: str | os.PathLike | Source, feed=None) -> Source:
    """A Source for a folder, a URI, a CSV/parquet list of image paths, or a product feed (CSV, TSV,
    Parquet or JSON Lines, gzipped or not; ``feed``: its ``FeedOptions``)."""
    if isinstance(src, Source):
        return src
    s = str(src)
    if "://" not in s and os.path.islink(s):  # a link to nothing, or to itself: say so before resolving it
        what = describe(s)
        if what and not what.startswith("is a folder"):
            raise CatalogError(f"{s!r} {what}; pass the folder of product photos or a CSV list of them.")
    if "://" not in s and not Path(s).is_dir() and _feed_like(s, feed):
        if (feed is None or not feed.given()) and Path(s).suffix.lower() in LIST_SUFFIXES and _lists_paths(s):
            try:
                return ListSource(s)  # a list of photo paths, unless it has no path column after all
            except NotAList:
                pass
        return FeedSource(s, feed or FeedOptions())
    if "://" in s:
        if s.startswith("file://") and Path(s[len("file://"):]).suffix.lower() in LIST_SUFFIXES:
            return ListSource(s[len("file://"):])
        return FileSystemSource(s)
    if Path(s).suffix.lower() in LIST_SUFFIXES and not Path(s).is_dir():
        return ListSource(s)
    return FolderSource(s)


def _lists_paths(path: str) -> bool:
    """Whether a CSV or parquet file's header names a column of photo paths (a list file rather than a
    product feed); True when the header cannot be read (the list reader then says why)."""
    try:
        if Path(path).suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:
            with open_file(path, "List file") as f:
                head = f.read(65536).split(b"\n", 1)[0]
            columns = [c.strip().strip('"').lower() for c in head.decode("utf-8-sig").split(separator(head))]
    except Exception:  # any reason: ListSource reads the file and reports it properly
        return True
    return any(str(c).lower() in ("path",) + FILE_COLUMNS for c in columns)


def _feed_like(path: str, feed) -> bool:
    """Whether a file may be a product feed: its name (CSV, TSV, Parquet, JSON Lines, gzipped or not), or
    feed options given."""
    return (feed is not None and feed.given()) or is_feed_file(path)
