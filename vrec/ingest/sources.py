"""Which source a catalog argument names: a folder, a URI, a list of photo paths, or a product feed."""
from __future__ import annotations

import os
from pathlib import Path

from vrec.base.errors import CatalogError
from vrec.base.userfiles import describe
from vrec.ingest.catalog import LIST_SUFFIXES, FileSystemSource, FolderSource, ListSource, NotAList, Source
from vrec.ingest.feed_source import FeedOptions, FeedSource
from vrec.ingest.feeds import is_feed_file


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
        if (feed is None or not feed.given()) and Path(s).suffix.lower() in LIST_SUFFIXES:
            try:
                return ListSource(s)  # a list of photo paths, unless it has no path column
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


def _feed_like(path: str, feed) -> bool:
    """Whether a file may be a product feed: its name (CSV, TSV, Parquet, JSON Lines, gzipped or not), or
    feed options given."""
    return (feed is not None and feed.given()) or is_feed_file(path)
